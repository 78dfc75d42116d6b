from .flops_budget import FlopsBudget, FlopsEstimator, normalize_scores
from .prune import (PruneResult, build_criterion, check_finite_weights,
                    prune_graph, prune_segmentor)

__all__ = [
    'FlopsBudget', 'FlopsEstimator', 'normalize_scores', 'PruneResult',
    'build_criterion', 'check_finite_weights', 'prune_graph',
    'prune_segmentor'
]
