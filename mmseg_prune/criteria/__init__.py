from .base import BaseCriterion, reduce_members
from .magnitude import (BNScaleCriterion, FPGMCriterion, L1Criterion,
                        RandomCriterion)
from .mtp import MTPCriterion
from .sirfp import SIRFPCriterion
from .sirfp_statistics import (RedundancyStatistics, batch_detail,
                               batch_redundancy, batch_statistics)
from .taylor import TaylorCriterion

#: Short names accepted by ``--criterion``.
CRITERIA_ALIASES = {
    'random': 'RandomCriterion',
    'l1': 'L1Criterion',
    'bn_scale': 'BNScaleCriterion',
    'fpgm': 'FPGMCriterion',
    'taylor': 'TaylorCriterion',
    'sirfp': 'SIRFPCriterion',
    'mtp': 'MTPCriterion',
}

__all__ = [
    'BaseCriterion', 'reduce_members', 'RandomCriterion', 'L1Criterion',
    'BNScaleCriterion', 'FPGMCriterion', 'TaylorCriterion', 'SIRFPCriterion',
    'MTPCriterion', 'CRITERIA_ALIASES', 'RedundancyStatistics',
    'batch_detail', 'batch_redundancy', 'batch_statistics'
]
