"""Alternate MTP's score updates between segmentation and classification."""
from typing import Iterator, Optional

from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ..apis.runner import endless
from ..models.mtp_segmentor import MTPSegmentor, mtp_wrapper
from ..utils.errors import PruneError


def task_at(iteration: int, period: dict) -> str:
    """The task of ``iteration`` in a cycle of ``period['seg']``
    segmentation steps followed by ``period['cls']`` classification steps.
    """
    seg, cls = period['seg'], period['cls']
    return 'seg' if iteration % (seg + cls) < seg else 'cls'


def check_period(period: dict) -> dict:
    """``period`` with both counts, or a clear error."""
    period = {**dict(seg=1, cls=1), **(period or {})}
    if set(period) != {'seg', 'cls'} or not all(
            isinstance(v, int) and v >= 0 for v in period.values()) or \
            period['seg'] + period['cls'] == 0:
        raise PruneError(f'the MTP period must be dict(seg=S, cls=C) with '
                         f'counts >= 0, not both 0; got {period}')
    return period


def prepare_step(model: MTPSegmentor, iteration: int, period: dict,
                 cls_batches: Optional[Iterator]) -> None:
    """Set the task of ``model``'s next training step and its
    classification batch (None in the label-free mode)."""
    model.task = task_at(iteration, period)
    model.cls_batch = next(cls_batches) if (
        model.task == 'cls' and cls_batches is not None) else None


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
        if mtp_wrapper(runner.model) is None:
            model = getattr(runner.model, 'module', runner.model)
            raise PruneError(
                'MTPHook needs model=dict(type="MTPSegmentor", segmentor=...)'
                f' in the config; the model is a {type(model).__name__}')
        if self.cls_dataloader is not None:
            loader = runner.build_dataloader(self.cls_dataloader,
                                             seed=runner.seed)
            self._cls_batches = endless(loader)
        else:
            runner.logger.info('MTPHook: no cls_dataloader, so the '
                               'classification steps are label-free')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        model = mtp_wrapper(runner.model)
        if model.searching:
            prepare_step(model, runner.iter, self.period, self._cls_batches)
