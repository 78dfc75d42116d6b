"""Two processes (gloo, CPU) under MMEngine's DDP keep identical MTP scores."""
import warnings

import torch

from tests.helpers import (SMALL, data_batch, fake_batch, run_on_two_ranks,
                      small_crop_config)

STEPS = 4


def _search(rank):
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import build_optim_wrapper

    from mmseg_prune.apis import build_segmentor
    from mmseg_prune.models import prepare_step
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


def test_ranks_keep_identical_scores(tmp_path):
    rank0, rank1 = run_on_two_ranks(_search, tmp_path)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # The ranks saw different images, and the scores did move.
    assert any(not torch.equal(v, torch.ones_like(v))
               for v in rank0.values())
