"""FLOPs, parameters and latency of a segmentor at inference.

One counter, :class:`mmengine.analysis.FlopAnalyzer`, serves both the pruning
budget and every report. Like mmseg's ``get_flops.py`` it counts one fused
multiply-add as one FLOP, so figures are labelled "FLOPs (MACs)", and it
measures the inference path (``mode='tensor'``: backbone, neck, decode heads,
no auxiliary head) for one image of a stated input shape.
"""
import contextlib
import functools
from dataclasses import dataclass
from typing import Dict, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer

from ..structure import auxiliary_heads, inference_forward
from ..utils.errors import PruneError


class InferenceForward(nn.Module):
    """Wraps a segmentor so that ``forward(x)`` is its tensor-mode forward
    (:func:`~mmseg_prune.structure.inference_forward`)."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, inputs: torch.Tensor):
        return inference_forward(self.segmentor, inputs)


@dataclass
class Complexity:
    """Cost of one inference.

    Attributes:
        flops (int): FLOPs counted as multiply-adds (MACs).
        params (int): Parameters used at inference (auxiliary heads excluded).
        by_module (dict[str, int]): FLOPs (MACs) of every module, parents
            included (``''`` is the whole model).
        input_shape (tuple[int, int]): The (H, W) counted.
    """
    flops: int
    params: int
    by_module: Dict[str, int]
    input_shape: tuple


def inference_params(segmentor: nn.Module) -> int:
    """Number of parameters outside the auxiliary heads."""
    aux = {id(p) for h in auxiliary_heads(segmentor) for p in h.parameters()}
    return sum(p.numel() for p in segmentor.parameters() if id(p) not in aux)


@functools.lru_cache(maxsize=None)
def _mmcv_functions() -> frozenset:
    """mmcv's autograd Functions (its compiled ops), found once."""
    import sys

    import mmcv.ops  # noqa: F401 - imports its submodules
    return frozenset(
        value for name, module in list(sys.modules.items())
        if name.startswith('mmcv.ops.') and module is not None
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, torch.autograd.Function)
        and value.__module__ == name)


@contextlib.contextmanager
def _untraced_mmcv_ops():
    """Run mmcv's compiled ops outside the tracer while FLOPs are counted.

    Their C++ kernels call ATen ops element by element, which torch.jit's
    tracer would record one by one: PSANet's PSAMask took over 10 GB and
    minutes at 256x256 (and more than this machine's 24 GB at 512x512).
    The counter does not count these ops' FLOPs anyway.
    """
    originals = {}

    def untraced(original):

        def forward(*args, **kwargs):
            state = torch._C._get_tracing_state()
            torch._C._set_tracing_state(None)
            try:
                return original(*args, **kwargs)
            finally:
                torch._C._set_tracing_state(state)

        return staticmethod(forward)

    for function in _mmcv_functions():
        if 'forward' in vars(function):
            originals[function] = vars(function)['forward']
            function.forward = untraced(function.forward)
    try:
        yield
    finally:
        for function, forward in originals.items():
            function.forward = forward


@torch.no_grad()
def count_complexity(segmentor: nn.Module,
                     input_shape: Sequence[int]) -> Complexity:
    """Count FLOPs (MACs) and parameters of one (1, 3, H, W) inference.

    Args:
        segmentor (nn.Module): The segmentor (on the CPU).
        input_shape (tuple[int, int]): (H, W).

    Returns:
        Complexity: The counts.
    """
    was_training = segmentor.training
    segmentor.eval()
    try:
        analyzer = FlopAnalyzer(
            InferenceForward(segmentor),
            torch.zeros(1, 3, *input_shape))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        prefix = 'segmentor.'
        with _untraced_mmcv_ops():  # the analyzer traces on first use
            by_module = {
                (name[len(prefix):] if name.startswith(prefix) else ''):
                count
                for name, count in analyzer.by_module().items()
                if name.startswith(prefix) or name in ('', 'segmentor')
            }
        total = analyzer.total()
    finally:
        segmentor.train(was_training)
    by_module[''] = total
    return Complexity(
        flops=int(total),
        params=inference_params(segmentor),
        by_module=by_module,
        input_shape=tuple(input_shape))


@torch.no_grad()
def default_input_shape(cfg) -> Sequence[int]:
    """(H, W) to count FLOPs at: the preprocessor's size or the crop size."""
    model = cfg.model
    if model.get('type') == 'PrunedSegmentor' and model.get('architecture'):
        model = model.architecture  # an older pruned config
    size = model.get('data_preprocessor', {}).get('size') or \
        cfg.get('crop_size')
    if size is None:
        raise PruneError('the config sets no crop size; pass --input-shape '
                         'H W')
    return [int(s) for s in size]
