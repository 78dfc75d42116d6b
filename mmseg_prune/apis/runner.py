"""Fine-tune and evaluate through MMEngine's runner, as mmseg's tools do."""
import copy
import itertools
import os.path as osp
from typing import Dict, Optional

from mmengine.config import Config

from ..structure import forward_all_heads
from ..structure.layer_rules import is_batch_norm
from ..utils.errors import PruneError
from ..utils.misc import endless
from .config import check_data


class CalibrationBatches:
    """The first ``num_batches`` batches of the config's train dataloader,
    read as they are used (epoch after epoch if needed), so that long
    searches (MTP's) do not hold their images in memory.

    Args:
        cfg (Config): The config; its train data root must exist.
        num_batches (int): How many batches one pass yields.
        seed (int): Seed of the sampler's order and the augmentations.
            Default: 0.
    """

    def __init__(self, cfg, num_batches, seed=0):
        from mmengine.runner import Runner
        check_data(cfg)
        loader_cfg = cfg.train_dataloader.copy()
        loader_cfg.update(num_workers=0, persistent_workers=False)
        try:
            self.loader = Runner.build_dataloader(loader_cfg, seed=seed)
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


ONE_IMAGE_BATCH = (
    'fine-tuning needs train_dataloader.batch_size >= 2: a norm layer of '
    'this model sees one value per channel (image pooling, say) and cannot '
    'train on one image')


def check_trainable_batch(model, batch_size: int, input_shape) -> None:
    """Refuse, before any work, a batch size the model cannot train on: a
    batch norm that sees one value per channel (image pooling on one image)
    fails in training mode."""
    import torch

    smallest = []
    norms = [m for m in model.modules() if is_batch_norm(m)]
    hooks = [m.register_forward_pre_hook(
        lambda mod, args: smallest.append(args[0][0].numel() //
                                          args[0].shape[1]))
        for m in norms]
    try:
        with torch.no_grad():
            forward_all_heads(model.eval(), torch.zeros(1, 3, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    if smallest and batch_size * min(smallest) < 2:
        raise PruneError(ONE_IMAGE_BATCH)


def finetune(cfg: Config, work_dir: str, iters: int,
             distill: Optional[dict] = None) -> str:
    """Train ``cfg``'s model for ``iters`` iterations; return the last
    checkpoint.

    Iteration-based schedulers that end after ``iters`` are shortened to
    end there, so that the learning rate decays within the run.

    Args:
        cfg (Config): The (pruned) config.
        work_dir (str): Where the runner writes.
        iters (int): Training iterations.
        distill (dict, optional): Arguments of
            :class:`~mmseg_prune.hooks.DistillationHook` (``teacher``,
            ``checkpoint``...): add its logit KD loss.
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
    if distill:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='DistillationHook', **distill)]
    try:
        Runner.from_cfg(cfg).train()
    except ValueError as exc:
        if 'more than 1 value per channel' not in str(exc):
            raise
        raise PruneError(f'{ONE_IMAGE_BATCH} ({exc})') from exc
    return osp.join(work_dir, f'iter_{iters}.pth')
