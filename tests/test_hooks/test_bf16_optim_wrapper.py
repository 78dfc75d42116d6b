import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

import mmseg_prune  # noqa: F401 - registers the wrapper


def test_forward_in_bfloat16_update_in_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 2, 1))
    before = [p.detach().clone() for p in model.parameters()]
    wrapper = build_optim_wrapper(model, dict(
        type='BF16OptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
    x = torch.randn(2, 3, 8, 8)
    with wrapper.optim_context(model):
        out = model(x)
        loss = out.float().square().mean()
    assert out.dtype == torch.bfloat16
    wrapper.update_params(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    changed = [not torch.equal(o, n) for o, n in zip(before,
                                                     model.parameters())]
    assert all(changed)
    # Outside the context the model computes in float32 again.
    assert model(x).dtype == torch.float32
