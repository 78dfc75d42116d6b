"""MTP: channel importance learned jointly from classification and
segmentation (Chen et al., ICME 2022).

The search wraps the model in an :class:`~mmseg_prune.models.MTPSegmentor`
and updates the channel scores one step per calibration batch, alternating
segmentation and classification steps; a channel's importance is |score|.
Scoring folds the scores into the model's norm layers first, so the model
that is pruned is the plain segmentor computing what the gated one did.
"""
from typing import Optional

import torch
from mmengine.optim import build_optim_wrapper
from mmengine.utils import ProgressBar

from ..models import MTPSegmentor, check_period, mtp_wrapper, prepare_step
from ..registry import PRUNING_CRITERIA
from ..utils.errors import PruneError
from ..utils.misc import endless
from .base import BaseCriterion


@PRUNING_CRITERIA.register_module()
class MTPCriterion(BaseCriterion):
    """|score| of channel scores learned by MTP's alternating search.

    Args:
        period (dict): ``dict(seg=S, cls=C)``: S segmentation steps, then C
            classification steps, repeated. Default: one each.
        optimizer (dict): Optimizer of the search. Default: Adam, lr 0.01.
        cls_dataloader (dict, optional): Dataloader config of an
            ImageNet-style folder; None for the label-free mode.
        **model_args: :class:`~mmseg_prune.models.MTPSegmentor` arguments
            (``classifier``, ``alpha``, ``sparsity``, ``temperature``,
            ``freeze_weights``).

    Attributes:
        model (MTPSegmentor | None): The searched wrapper: the calibration
            search's, or the training run's (:meth:`watch`; the run's
            :class:`~mmseg_prune.hooks.MTPHook` drives the search).
    """

    requires_data = True
    learns_during_training = True
    #: Scores of all groups share one scale (they start at 1 under one L1
    #: term), so one global threshold on raw |score| chooses the channels.
    budget_defaults = dict(mode='global', normalizer=None)

    def __init__(self, period: Optional[dict] = None,
                 optimizer: Optional[dict] = None,
                 cls_dataloader: Optional[dict] = None, **model_args):
        self.period = check_period(period)
        self.optimizer = optimizer or dict(type='Adam', lr=0.01)
        self.cls_dataloader = cls_dataloader
        self.model_args = model_args
        self.model = None

    def prepare(self, graph, batches):
        from mmengine.runner import Runner
        if batches is None:
            raise PruneError(
                'the mtp criterion needs data: give the config a '
                'train_dataloader whose data_root exists (--data-root DIR)')
        model = MTPSegmentor(graph.model, graph=graph, **self.model_args)
        optim_wrapper = build_optim_wrapper(
            model, dict(type='OptimWrapper', optimizer=self.optimizer))
        cls_batches = None
        if self.cls_dataloader is not None:
            loader_cfg = dict(self.cls_dataloader, num_workers=0,
                              persistent_workers=False)
            cls_batches = endless(
                Runner.build_dataloader(loader_cfg, seed=0))
        model.train()
        progress = ProgressBar(len(batches))
        with torch.enable_grad():
            for step, data in enumerate(batches):
                prepare_step(model, step, self.period, cls_batches)
                model.train_step(data, optim_wrapper)
                progress.update()
        model.eval()
        self.model = model

    def watch(self, model, graph):
        """Score with the search of the training run's MTPSegmentor."""
        self.model = mtp_wrapper(
            model, required_by='pruning with the mtp criterion during '
            'training (beside an MTPHook)')

    def finish(self, model):
        """End the run's search: from here it trains the plain segmentor."""
        wrapper = mtp_wrapper(model)
        if wrapper is not None and wrapper.searching:
            wrapper.finish_search()

    def score(self, graph):
        """Fold the scores into ``graph.model`` and return |score|.

        Groups without scores (no gatable layer, or ignored by the wrapper)
        are kept whole.
        """
        if self.model is None:
            raise PruneError('MTPCriterion has no searched scores: call it '
                             'with calibration batches, or run it inside '
                             'training with MTPSegmentor and PruningHook')
        gates = self.model.gates
        importance = gates.importance()
        kept = [g.name for g in graph.groups if g.name not in importance]
        if kept:
            from mmengine.logging import print_log
            print_log(f'MTP learned no scores for {len(kept)} channel '
                      f'group(s); they are kept whole: {", ".join(kept)}',
                      logger='current', level=30)
            graph.groups = [g for g in graph.groups if g.name in importance]
        self.model.finish_search()
        gates.fold_into(graph.model)
        self._importance = importance
        return super().score(graph)

    def score_group(self, graph, group):
        return self._importance[group.name]
