"""Two processes (gloo, CPU) under MMEngine's DDP keep identical MTP scores."""
import os
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import SMALL, data_batch, fake_batch, small_crop_config

STEPS = 4


def _search(rank):
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import build_optim_wrapper

    from mmseg_prune.apis import build_segmentor
    from mmseg_prune.hooks.mtp_hook import prepare_step
    from mmseg_prune.models import MTPSegmentor
    torch.manual_seed(0)
    segmentor = build_segmentor(small_crop_config(SMALL, 64))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = MTPSegmentor(segmentor, input_shape=(64, 64), sparsity=1e-3)
    ddp = MMDistributedDataParallel(module=model.train(),
                                    find_unused_parameters=True)
    optim_wrapper = build_optim_wrapper(
        ddp, dict(type='OptimWrapper',
                  optimizer=dict(type='Adam', lr=0.05)))
    for step in range(STEPS):  # seg, cls (label-free), seg, cls
        prepare_step(model, step, dict(seg=1, cls=1), None)
        batch = data_batch(*fake_batch(segmentor, seed=10 * rank + step))
        ddp.train_step(batch, optim_wrapper)
    return {k: v.detach().clone() for k, v in model.gates.scores.items()}


def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world)
    try:
        torch.save(_search(rank), os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


def test_ranks_keep_identical_scores(tmp_path):
    mp.start_processes(_worker, args=(2, str(tmp_path / 'init'),
                                      str(tmp_path)),
                       nprocs=2, join=True, start_method='fork')
    rank0 = torch.load(tmp_path / 'rank0.pth')
    rank1 = torch.load(tmp_path / 'rank1.pth')
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # The ranks saw different images, and the scores did move.
    assert any(not torch.equal(v, torch.ones_like(v))
               for v in rank0.values())
