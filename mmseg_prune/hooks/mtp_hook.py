"""Alternate MTP's score updates between segmentation and classification."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ..models.mtp_segmentor import (check_period, mtp_wrapper,
                                    prepare_step)
from ..utils.errors import PruneError
from ..utils.misc import endless


@HOOKS.register_module()
class MTPHook(Hook):
    """Drive an :class:`~mmseg_prune.models.MTPSegmentor`'s search.

    Before every training iteration it sets the wrapper's task from the
    iteration number (so a resumed run continues the same cycle) and, for a
    classification step, draws a batch from the classification dataloader.
    Without one the classification steps are label-free: the dense
    network's own predictions on the segmentation images are the targets.
    Once the search has ended (the scores were folded and the model pruned)
    every step is a plain segmentation step.

    Args:
        period (dict): ``dict(seg=S, cls=C)``: S segmentation steps, then C
            classification steps, repeated. Default: ``dict(seg=1, cls=1)``.
        cls_dataloader (dict, optional): A dataloader config of an
            ImageNet-style folder (see
            :class:`~mmseg_prune.datasets.ImageFolderDataset`).
    """

    priority = 'HIGH'

    def __init__(self, period: Optional[dict] = None,
                 cls_dataloader: Optional[dict] = None):
        self.period = check_period(period)
        self.cls_dataloader = cls_dataloader
        self._cls_batches = None

    def before_train(self, runner) -> None:
        wrapper = mtp_wrapper(runner.model, required_by='MTPHook')
        optimized = {id(p) for group in
                     runner.optim_wrapper.optimizer.param_groups
                     for p in group['params']}
        left_out = [n for n, p in wrapper.segmentor.named_parameters()
                    if id(p) not in optimized]
        if left_out:
            raise PruneError(
                f'{len(left_out)} parameters of the segmentor (e.g. '
                f'{left_out[0]}) are not in the optimizer, so they would not '
                'train after the search: MMEngine leaves frozen parameters '
                'out when optim_wrapper has a paramwise_cfg; add '
                'constructor="MTPOptimWrapperConstructor" to optim_wrapper')
        if self.cls_dataloader is not None:
            loader = runner.build_dataloader(self.cls_dataloader,
                                             seed=runner.seed)
            self._cls_batches = endless(loader)
        else:
            runner.logger.info('MTPHook: no cls_dataloader, so the '
                               'classification steps are label-free')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """During the search, the scores' mean |score| and the share of
        channels whose |score| is under half its start (1) go to the message
        hub, so the log and visualizer backends show the search converge;
        the pruning step's FLOPs, params and kept share come from
        PruningHook."""
        model = mtp_wrapper(runner.model)
        if model is None or not model.searching:
            return
        scores = torch.cat(list(model.gates.importance().values()))
        hub = runner.message_hub
        hub.update_scalar('train/mtp_mean_score', float(scores.mean()))
        hub.update_scalar('train/mtp_low_score_share',
                          float((scores < 0.5).float().mean()))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        wrapper = mtp_wrapper(runner.model)
        if wrapper is not None and not wrapper.searching:
            # After the search the run trains the plain segmentor: save it
            # as one, so the checkpoint fits pruned_config.py.
            checkpoint['state_dict'] = wrapper.segmentor_state_dict(
                checkpoint['state_dict'])

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        model = mtp_wrapper(runner.model)
        if model.searching:
            prepare_step(model, runner.iter, self.period, self._cls_batches)
