from .estimators import CostEstimator, FlopsEstimator, LatencyEstimator
from .flops_budget import FlopsBudget, normalize_scores
from .prune import (PruneResult, build_criterion, check_finite_weights,
                    prune_graph, prune_segmentor)

__all__ = [
    'CostEstimator', 'FlopsBudget', 'FlopsEstimator', 'LatencyEstimator',
    'normalize_scores', 'PruneResult', 'build_criterion', 'check_finite_weights', 'prune_graph',
    'prune_segmentor'
]
