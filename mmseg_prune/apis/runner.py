"""Fine-tune and evaluate through MMEngine's runner, as mmseg's tools do."""
import copy
import itertools
import os.path as osp
from typing import Dict, Iterator, Optional

from mmengine.config import Config

from ..utils.errors import PruneError
from .config import check_data


def endless(loader) -> Iterator:
    """Batches of ``loader``, epoch after epoch."""
    for epoch in itertools.count():
        sampler = getattr(loader, 'sampler', None)
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(epoch)
        yield from loader


class CalibrationBatches:
    """The first ``num_batches`` batches of the config's train dataloader,
    read as they are used (epoch after epoch if needed), so that long
    searches (MTP's) do not hold their images in memory.

    Args:
        cfg (Config): The config; its train data root must exist.
        num_batches (int): How many batches one pass yields.
    """

    def __init__(self, cfg, num_batches):
        from mmengine.runner import Runner
        check_data(cfg)
        loader_cfg = cfg.train_dataloader.copy()
        loader_cfg.update(num_workers=0, persistent_workers=False)
        try:
            self.loader = Runner.build_dataloader(loader_cfg, seed=0)
        except Exception as exc:  # noqa: BLE001 - reported to the user
            raise PruneError(f'cannot build the train dataloader: '
                             f'{type(exc).__name__}: {exc}') from exc
        self.num_batches = num_batches

    def __len__(self):
        return self.num_batches

    def __iter__(self):
        return itertools.islice(endless(self.loader), self.num_batches)


def _runner_config(cfg: Config, work_dir: str) -> Config:
    cfg = copy.deepcopy(cfg)
    cfg.pop('pruning', None)
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key):
            cfg[key].update(num_workers=0, persistent_workers=False)
    return cfg


def evaluate(cfg: Config, work_dir: str,
             checkpoint: Optional[str] = None) -> Dict[str, float]:
    """The metrics of ``cfg``'s model on its test set.

    Args:
        cfg (Config): A dense or pruned config.
        work_dir (str): Where the runner logs.
        checkpoint (str, optional): Weights loaded first (a pruned config
            also loads its own ``pruned_weights``).

    Returns:
        dict[str, float]: What the test evaluator reports (mIoU, ...).
    """
    from mmengine.runner import Runner
    check_data(cfg, 'test_dataloader')
    cfg = _runner_config(cfg, work_dir)
    cfg.load_from = checkpoint
    cfg.resume = False
    runner = Runner.from_cfg(cfg)
    return {k: float(v) for k, v in runner.test().items()}


def finetune(cfg: Config, work_dir: str, iters: int) -> str:
    """Train ``cfg``'s model for ``iters`` iterations; return the last
    checkpoint.

    Iteration-based schedulers that end after ``iters`` are shortened to
    end there, so that the learning rate decays within the run.
    """
    from mmengine.runner import Runner
    check_data(cfg)
    cfg = _runner_config(cfg, work_dir)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=iters)
    schedulers = cfg.get('param_scheduler') or []
    for scheduler in (schedulers if isinstance(schedulers, list)
                      else [schedulers]):
        if not scheduler.get('by_epoch', True) and \
                scheduler.get('end', 0) > iters:
            scheduler['end'] = iters
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=iters)
    try:
        Runner.from_cfg(cfg).train()
    except ValueError as exc:
        if 'more than 1 value per channel' not in str(exc):
            raise
        raise PruneError(
            'fine-tuning needs train_dataloader.batch_size >= 2: a norm '
            'layer of this model sees one value per channel (image pooling, '
            f'say) and cannot train on one image ({exc})') from exc
    return osp.join(work_dir, f'iter_{iters}.pth')
