"""Training runs under MMEngine's DDP (two gloo processes on the CPU):
PruningHook prunes every rank alike and rebuilds the DDP wrapper; MTP keeps
one set of scores."""
import os

import pytest
import torch

from tests.helpers import run_on_two_ranks, small_voc_config

SIZE = 64


def _bn(node):
    """SyncBN -> BN: torch's SyncBN trains on GPUs only."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for value in node.values():
            _bn(value)
    elif isinstance(node, list):
        for value in node:
            _bn(value)


def _config(kind, demo_root, work_dir):
    cfg = small_voc_config(demo_root, SIZE)
    _bn(cfg.model)
    schedule = [dict(iter=2, flops_reduction=0.5)]
    if kind == 'sirfp':
        cfg.custom_hooks = [dict(type='PruningHook', schedule=schedule,
                                 criterion=dict(type='sirfp', momentum=0.9))]
    else:
        cfg.model = dict(type='MTPSegmentor', segmentor=cfg.model,
                         classifier=dict(num_classes=21), sparsity=1e-3)
        cfg.custom_hooks = [
            dict(type='MTPHook'),
            dict(type='PruningHook', criterion='mtp', schedule=schedule)]
    cfg.pop('pruning')
    cfg.launcher = 'pytorch'
    # device_ids=None: MMEngine would pass the GPU of LOCAL_RANK.
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel',
                                 device_ids=None,
                                 find_unused_parameters=kind == 'mtp')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=3,
                         val_interval=1000)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        by_epoch=False, interval=3)
    cfg.work_dir = work_dir
    return cfg


def _train(rank, kind, demo_root, out_dir):
    import warnings
    warnings.simplefilter('ignore')
    from mmengine.model import MMDistributedDataParallel
    from mmengine.runner import Runner
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2')
    runner = Runner.from_cfg(_config(kind, demo_root, out_dir))
    runner.train()
    assert isinstance(runner.model, MMDistributedDataParallel)
    model = runner.model.module
    from mmseg_prune.hooks import PruningHook
    pruner = next(h for h in runner.hooks if isinstance(h, PruningHook))
    # Parameters (BN running statistics stay per rank, as under DDP), and
    # the channels this rank decided to keep, before the wrapper was
    # rebuilt (which copies rank 0's parameters to the others).
    return dict(params={k: v.detach().clone()
                        for k, v in model.named_parameters()},
                kept=pruner.kept_indices)


@pytest.mark.parametrize('kind', ['sirfp', 'mtp'])
@pytest.mark.filterwarnings('ignore')
def test_ranks_prune_alike_and_train_on(kind, demo_root, tmp_path):
    rank0, rank1 = run_on_two_ranks(_train, tmp_path, kind, demo_root,
                                    str(tmp_path))
    # Each rank decided the same channels on its own.
    assert len(rank0['kept']) == len(rank1['kept']) == 1
    kept0, kept1 = rank0['kept'][0], rank1['kept'][0]
    assert kept0.keys() == kept1.keys() and kept0
    for group in kept0:
        assert torch.equal(kept0[group], kept1[group]), group
    rank0, rank1 = rank0['params'], rank1['params']
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # Pruned before iteration 2, then trained on in the rebuilt wrapper.
    meta = torch.load(tmp_path / 'iter_3.pth')['meta']['mmseg_prune']
    assert meta['steps_done'] == 1 and meta['pruned_structure']
    prefix = 'segmentor.' if kind == 'mtp' else ''
    checked = 0
    for name, spec in meta['pruned_structure'].items():
        for tensor, shape in spec['shapes'].items():
            key = f'{prefix}{name}.{tensor}'
            if key in rank0:  # parameters; buffers were not gathered
                assert list(rank0[key].shape) == shape
                checked += 1
    assert checked
