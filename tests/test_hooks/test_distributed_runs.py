"""Training runs under MMEngine's DDP (two gloo processes on the CPU):
PruningHook prunes every rank alike and rebuilds the DDP wrapper; MTP keeps
one set of scores."""
import os
import os.path as osp

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import small_voc_config

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
                                 momentum=0.9)]
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


def _worker(rank, world, kind, demo_root, out_dir):
    import warnings
    warnings.simplefilter('ignore')
    from mmengine.model import MMDistributedDataParallel
    from mmengine.runner import Runner
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    dist.init_process_group(
        'gloo', init_method=f'file://{osp.join(out_dir, "init")}',
        rank=rank, world_size=world)
    try:
        runner = Runner.from_cfg(_config(kind, demo_root, out_dir))
        runner.train()
        assert isinstance(runner.model, MMDistributedDataParallel)
        model = runner.model.module
        # Parameters (BN running statistics stay per rank, as under DDP).
        state = {k: v.detach().clone() for k, v in model.named_parameters()}
        torch.save(state, osp.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('kind', ['sirfp', 'mtp'])
@pytest.mark.filterwarnings('ignore')
def test_ranks_prune_alike_and_train_on(kind, demo_root, tmp_path):
    mp.start_processes(_worker, args=(2, kind, demo_root, str(tmp_path)),
                       nprocs=2, join=True, start_method='fork')
    rank0 = torch.load(tmp_path / 'rank0.pth')
    rank1 = torch.load(tmp_path / 'rank1.pth')
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
