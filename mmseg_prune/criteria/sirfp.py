"""SIRFP: spatial-aware information redundancy pruning (Wu et al., AAAI 2025).

Per layer, channels are the vertices of a graph whose edges carry the
spatial-aware redundancy ``S`` of their feature maps; the greedy maximum
edge-weight clique solver removes the most redundant channel step by step,
and a channel's score is ``beta * E - R`` (the official code's
``GraphEdgePruner``): ``R`` is its redundancy row sum when the solver removed
it, ``E`` its spatial-detail term. The second-stage variant
(``GraphEdgeV2Pruner``) scores ``0.4 * G - R`` in every layer, with ``G`` the
gradient term.

Coupled channels (a residual stream shared by several blocks, the inputs of a
concatenation) are scored by every member layer on its own; the group keeps
a channel whose best member score passes the threshold, which is the official
code's rule (a residual channel goes only when every member drops it).
"""
from contextlib import nullcontext
from typing import Optional

import torch
from mmengine.utils import ProgressBar

from ..models import trained_segmentor
from ..registry import PRUNING_CRITERIA
from ..structure import forward_all_heads, output_layers
from ..utils.errors import PruneError
from .base import BaseCriterion
from .greedy_mewcp import greedy_removal_order
from .sirfp_statistics import RedundancyStatistics, batch_statistics

@PRUNING_CRITERIA.register_module()
class SIRFPCriterion(BaseCriterion):
    """Score channels by SIRFP's greedy MEWCP order and detail term.

    Args:
        backbone_beta (float): Weight of the detail term E in layers under
            ``backbone.``. Default: 0.4 (the official code; it suggests 0.2
            for large inputs such as Cityscapes crops).
        head_beta (float): Weight of E elsewhere. Default: 0.
        include_diagonal (bool): Count S_ii in the row sums, as the official
            code does (the paper excludes it). Default: True.
        gradient_weight (float | None): When set, use the second-stage
            variant instead: ``gradient_weight * gradient_scale * G - R`` in
            every layer, with G the mean |dL/dgamma| of the norm layers'
            scales, taken only where gamma * dL/dgamma > 0 (official: 0.4).
            Needs a backward pass per batch. Default: None.
        gradient_scale (float): Factor on G. The official code reads G from
            mixed-precision gradients, which carry the loss scale (2**16 at
            the start of training), so G dominates its score; the default
            reproduces that weighting. G itself is kept unscaled, whatever
            precision trains. 1 gives the unscaled variant, where the score
            is about -R. Default: 65536.
        calibration_mode (str): ``'train'``: norm layers use batch
            statistics during calibration, as the official statistics are
            taken during training (running statistics are not changed);
            ``'eval'``: the running statistics. Default: ``'train'``.
        momentum (float): EMA rate r of the statistics collected inside a
            training run (``S <- r S + (1 - r) S_batch``, as the official
            code). Default: 0.999.
    """

    requires_data = True
    learns_during_training = True
    #: The official budget: backbone and head cut at the same quantile of
    #: their raw scores.
    budget_defaults = dict(mode='split', normalizer=None)
    #: The official code's ``resize_subnet_bias``.
    bias_compensation = True

    def __init__(self, backbone_beta: float = 0.4, head_beta: float = 0.0,
                 include_diagonal: bool = True,
                 gradient_weight: Optional[float] = None,
                 gradient_scale: float = 2.0**16,
                 calibration_mode: str = 'train', momentum: float = 0.999):
        if calibration_mode not in ('train', 'eval'):
            raise PruneError(f'SIRFPCriterion calibration_mode must be '
                             f'"train" or "eval", got "{calibration_mode}"')
        self.backbone_beta = backbone_beta
        self.head_beta = head_beta
        self.include_diagonal = include_diagonal
        self.gradient_weight = gradient_weight
        self.gradient_scale = gradient_scale
        self.calibration_mode = calibration_mode
        self.momentum = momentum
        self.statistics: Optional[RedundancyStatistics] = None

    @staticmethod
    def watched_layers(graph) -> list:
        """Names of the layers whose outputs SIRFP reads."""
        return sorted({m.name for g in graph.groups
                       for m in output_layers(graph, g)})

    def prepare(self, graph, batches):
        if batches is None:
            raise PruneError(
                'the sirfp criterion needs data: give the config a '
                'train_dataloader whose data_root exists (--data-root DIR)')
        model = graph.model.eval()
        stats = RedundancyStatistics(
            model, self.watched_layers(graph),
            gradients=self.gradient_weight is not None)
        progress = ProgressBar(len(batches))
        mode = batch_statistics(model) if self.calibration_mode == 'train' \
            else nullcontext()
        try:
            with mode:
                for data in batches:
                    self._calibration_step(model, data)
                    progress.update()
        finally:
            stats.remove()
            model.zero_grad(set_to_none=True)
        self.statistics = stats

    def _calibration_step(self, model, data) -> None:
        data = model.data_preprocessor(data, True)
        if self.gradient_weight is None:
            with torch.no_grad():
                forward_all_heads(model, data['inputs'])
        else:  # the statistics read G during backward
            with torch.enable_grad():
                losses = model.loss(data['inputs'], data['data_samples'])
                model.parse_losses(losses)[0].backward()

    def watch(self, model, graph):
        """Collect the statistics (an EMA) from the training forward passes
        of ``model``'s layers; with ``gradient_weight``, G from its
        backward passes too."""
        self.unwatch()
        self.statistics = RedundancyStatistics(
            trained_segmentor(model), self.watched_layers(graph),
            momentum=self.momentum,
            training_only=True, gradients=self.gradient_weight is not None)

    def unwatch(self):
        if self.statistics is not None:
            self.statistics.remove()

    def state_dict(self):
        """The statistics, averaged over ranks: the EMA goes on from the
        average, which leaves the average at the next step unchanged (it is
        linear)."""
        if self.statistics is None:
            return {}
        self.statistics.synchronize()
        return self.statistics.state_dict()

    def load_state_dict(self, state):
        if state:
            self.statistics.load_state_dict(state)

    def score(self, graph):
        """Score from the statistics averaged over ranks, so that every rank
        decides the same mask."""
        if self.statistics is None:
            raise PruneError('SIRFPCriterion has no statistics: call it with '
                             'calibration batches, or watch a training run')
        self.statistics.synchronize()
        return super().score(graph)

    def layer_scores(self, name: str) -> torch.Tensor:
        """SIRFP scores of one watched layer's channels."""
        stats = self.statistics
        if name not in stats.redundancy:
            raise PruneError(
                f'no SIRFP statistics for layer {name}: it did not run on '
                '4-D feature maps during calibration (SIRFP reads feature '
                'maps, not the tokens of a transformer\'s linear layers); '
                'prune this model with l1, fpgm or taylor, or keep the '
                'layer whole with pruning.ignore')
        _, row_sums = greedy_removal_order(stats.redundancy[name],
                                           self.include_diagonal)
        if self.gradient_weight is not None:
            return self.gradient_weight * self.gradient_scale * \
                stats.gradient.get(
                name, torch.zeros_like(row_sums)).double() - row_sums
        beta = self.backbone_beta if name.startswith('backbone.') else \
            self.head_beta
        return beta * stats.detail[name].double() - row_sums

    def score_group(self, graph, group):
        best = torch.full((group.size, ), -float('inf'), dtype=torch.float64)
        for member in output_layers(graph, group):
            scores = self.layer_scores(member.name)[member.idxs]
            root = torch.as_tensor(member.root_idxs, dtype=torch.long)
            best = best.scatter_reduce(0, root, scores, reduce='amax')
        if torch.isinf(best).any():
            raise PruneError(f'SIRFP watched no layer for some channels of '
                             f'{group.name}')
        return best
