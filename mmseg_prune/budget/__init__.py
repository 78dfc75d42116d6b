from .flops_budget import FlopsBudget, FlopsEstimator, normalize_scores

__all__ = ['FlopsBudget', 'FlopsEstimator', 'normalize_scores']
