"""Criteria computed from the weights alone."""
import torch
import torch_pruning as tp

from ..registry import PRUNING_CRITERIA
from ..structure.layer_rules import filters, is_norm, is_weight_layer
from .base import BaseCriterion, group_importance, reduce_members

@PRUNING_CRITERIA.register_module()
class RandomCriterion(BaseCriterion):
    """Random scores: the baseline every criterion must beat.

    Args:
        seed (int): Seed of the generator, so every rank and every run draw
            the same scores. Default: 0.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def prepare(self, graph, batches):
        self.generator = torch.Generator().manual_seed(self.seed)

    def score_group(self, graph, group):
        return torch.rand(group.size, generator=self.generator)


@PRUNING_CRITERIA.register_module()
class L1Criterion(BaseCriterion):
    """L1 norm of each filter (Li et al., ICLR 2017).

    For a coupled group (a residual stream), the filter norms of all convs
    that produce the group's channels are averaged.
    """

    def score_group(self, graph, group):
        return reduce_members(
            graph, group, is_weight_layer,
            lambda m: filters(m).abs().sum(1))


@PRUNING_CRITERIA.register_module()
class BNScaleCriterion(BaseCriterion):
    """|γ| of the norm layer after each filter (network slimming, Liu et
    al., ICCV 2017), averaged over the group's norm layers."""

    def score_group(self, graph, group):
        return reduce_members(
            graph, group, is_norm,
            lambda m: m.weight.abs() if m.weight is not None else
            torch.ones(m.num_features))


@PRUNING_CRITERIA.register_module()
class FPGMCriterion(BaseCriterion):
    """Distance to the geometric median of the filters (He et al., CVPR
    2019), torch-pruning's group implementation."""

    def __init__(self):
        self.importance = tp.importance.FPGMImportance(normalizer=None)

    def score_group(self, graph, group):
        return group_importance(self.importance, group)
