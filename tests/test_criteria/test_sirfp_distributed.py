"""Two processes (gloo, CPU) decide the same SIRFP mask, equal to one
process on the union of their data."""
import torch

from mmseg_prune.apis import build_segmentor, load_config, prune_segmentor

from tests.helpers import SMALL, data_batch, fake_batch, run_on_two_ranks

SIZE = (64, 64)


def _batches(model, seeds):
    return [data_batch(*fake_batch(model, seed=s)) for s in seeds]


def _decide(batches_seeds):
    torch.manual_seed(0)
    model = build_segmentor(load_config(SMALL))
    result = prune_segmentor(model, 'sirfp', 0.5, SIZE,
                             batches=_batches(model, batches_seeds))
    return {k: v.tolist() for k, v in result.keep.items()}


def _decide_on_rank(rank):
    return _decide([2 * rank, 2 * rank + 1])


def test_ranks_decide_the_union_mask(tmp_path):
    rank0, rank1 = run_on_two_ranks(_decide_on_rank, tmp_path)
    assert rank0 == rank1
    assert rank0 == _decide([0, 1, 2, 3])
