"""Two processes (gloo, CPU) decide the same SIRFP mask, equal to one
process on the union of their data."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmseg_prune.apis import build_segmentor, load_config, prune_segmentor

from conftest import SMALL, data_batch, fake_batch

SIZE = (64, 64)


def _batches(model, seeds):
    return [data_batch(*fake_batch(model, seed=s)) for s in seeds]


def _decide(batches_seeds):
    torch.manual_seed(0)
    model = build_segmentor(load_config(SMALL))
    result = prune_segmentor(model, 'sirfp', 0.5, SIZE,
                             batches=_batches(model, batches_seeds))
    return {k: v.tolist() for k, v in result.keep.items()}


def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world)
    try:
        keep = _decide([2 * rank, 2 * rank + 1])
        torch.save(keep, os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


def test_ranks_decide_the_union_mask(tmp_path):
    mp.start_processes(_worker, args=(2, str(tmp_path / 'init'),
                                      str(tmp_path)),
                       nprocs=2, join=True, start_method='fork')
    rank0 = torch.load(tmp_path / 'rank0.pth')
    rank1 = torch.load(tmp_path / 'rank1.pth')
    assert rank0 == rank1
    assert rank0 == _decide([0, 1, 2, 3])
