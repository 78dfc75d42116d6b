"""Spatial-aware redundancy statistics of feature maps (SIRFP).

For every hooked norm layer with C output channels this accumulates, from its
output x of shape (N, C, H, W):

- the redundancy matrix ``S[i, j] = mean_n <x̂_i, x̂_j>``, where
  ``x̂_c = x_c / (||x_c||_1 + 1e-5)`` over the full spatial map (the official
  SIRFP code's ``dice``);
- the spatial-detail term ``E[c]``: the spatial standard deviation of the
  Sobel gradient magnitude of ``x_c``, averaged over the batch (from DCFP);
- optionally the gradient term ``G[c]``, the mean ``|dL/dgamma_c|`` of the
  layer's scale (SIRFP's second stage), fed by :meth:`update_gradient`.

Batches are combined by a running mean (calibration pass) or an exponential
moving average (during training, ``S <- r S + (1 - r) S_batch`` from zero, as
the official code does). Ranks keep local sums and average them only when a
decision is needed (:meth:`RedundancyStatistics.synchronize`): both
combinations are linear, so the average of the ranks' statistics equals the
statistics of all their data, and every rank then decides the same mask.
"""
import warnings
from contextlib import contextmanager
from typing import Callable, Dict, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..structure.layer_rules import is_batch_norm

def symmetric_gram(rows: torch.Tensor, block: int = 256) -> torch.Tensor:
    """``rows @ rows.T`` from the blocks on and above the diagonal.

    The lower blocks are the upper ones transposed, so a (C, K) input costs
    about (C/block + 1) / (2 C/block) of the full product's multiply-adds:
    56% for C = 2048.
    """
    channels = rows.shape[0]
    if channels <= block:
        return rows @ rows.t()
    gram = rows.new_empty(channels, channels)
    for start in range(0, channels, block):
        stripe = rows[start:start + block] @ rows[start:].t()
        gram[start:start + block, start:] = stripe
        gram[start:, start:start + block] = stripe.t()
    return gram


def batch_redundancy(x: torch.Tensor) -> torch.Tensor:
    """``S`` of one batch: (N, C, H, W) -> (C, C), averaged over N.

    ``<x̂_i, x̂_j> = <x_i, x_j> / (||x_i||_1 ||x_j||_1)``: each image's Gram
    matrix of the raw maps, scaled, so that no normalised copy of the batch
    is written (on a CPU, writing one costs a third of the product).
    """
    n, channels = x.shape[:2]
    flat = x.detach().float().reshape(n, channels, -1)
    l1_norms = torch.linalg.vector_norm(flat, 1, dim=-1)  # no |x| copy
    inverse = (l1_norms + 1e-5).reciprocal_()
    total = flat.new_zeros(channels, channels)
    for maps, scale in zip(flat, inverse):
        # One product per entry keeps S exactly symmetric.
        total.addcmul_(symmetric_gram(maps), scale[:, None] * scale)
    return total.div_(n)


def _sobel_std(padded: torch.Tensor) -> torch.Tensor:
    """``E`` from the zero-padded maps (N, C, H + 2, W + 2): the spatial
    population std (divide by n, as the official code does) of the Sobel
    magnitude, averaged over N; from shifted slices, the form that
    torch.compile fuses into one loop."""
    across = padded[..., :, 2:] - padded[..., :, :-2]
    gx = across[..., 1:-1, :] + 0.5 * (across[..., :-2, :] +
                                       across[..., 2:, :])
    down = padded[..., 2:, :] - padded[..., :-2, :]
    gy = down[..., 1:-1] + 0.5 * (down[..., :-2] + down[..., 2:])
    return torch.hypot(gx, gy).std((-2, -1), correction=0).mean(0)


class PaddedMaps:
    """Zero-bordered copies of batches of maps, in one buffer kept between
    calls.

    On a CPU a fresh buffer of a large batch is page-faulted in on every
    call, which costs several times the copy; and padding inside the
    compiled kernel makes it test bounds at every load (3x slower).
    """

    def __init__(self):
        self._storage: Optional[torch.Tensor] = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, channels, height, width = x.shape
        numel = n * channels * (height + 2) * (width + 2)
        if (self._storage is None or self._storage.numel() < numel
                or self._storage.device != x.device):
            self._storage = torch.empty(numel, device=x.device)
        padded = self._storage[:numel].view(n, channels, height + 2,
                                            width + 2)
        padded[..., 1:-1, 1:-1].copy_(x.detach())
        for border in (padded[..., 0, :], padded[..., -1, :],
                       padded[..., :, 0], padded[..., :, -1]):
            border.zero_()
        return padded


#: Maps of at least this many elements (a batch of 4 of 256 channels at
#: 64x64) take the compiled detail kernel: the Sobel magnitude and its std
#: are one memory-bound pass there (4x faster than eager on a 2-core CPU).
#: Smaller maps stay eager: compiling (a few seconds, cached on disk) would
#: cost more than it saves.
FUSE_MIN_ELEMENTS = 2**22
_fused = dict(function=None, failed=False, calls=0)


def batch_detail(x: torch.Tensor,
                 padded_maps: Optional[PaddedMaps] = None) -> torch.Tensor:
    """``E`` of one batch: (N, C, H, W) -> (C,), averaged over N.

    Args:
        x (Tensor): The maps.
        padded_maps (PaddedMaps, optional): Buffer for the padded copy;
            None for a fresh one.
    """
    if x.shape[-1] * x.shape[-2] < 2:  # a 1x1 map (image pooling)
        return x.new_zeros(x.shape[1], dtype=torch.float)
    padded = padded_maps(x) if padded_maps is not None else \
        F.pad(x.detach().float(), (1, 1, 1, 1))
    if x.numel() >= FUSE_MIN_ELEMENTS and not _fused['failed']:
        try:
            if _fused['function'] is None:
                _fused['function'] = torch.compile(_sobel_std, dynamic=True)
            detail = _fused['function'](padded)
            _fused['calls'] += 1
            return detail
        except Exception as exc:  # noqa: BLE001 - eager is always there
            _fused['failed'] = True
            warnings.warn(f'SIRFP statistics: torch.compile failed '
                          f'({type(exc).__name__}); computing them eagerly '
                          '(same values, slower)')
    return _sobel_std(padded)


def map_statistics(x: torch.Tensor,
                   padded_maps: Optional[PaddedMaps] = None):
    """(``S``, ``E``) of one batch of maps (N, C, H, W): ``S`` (C, C) and
    ``E`` (C,), averaged over N."""
    return batch_redundancy(x), batch_detail(x, padded_maps)


@contextmanager
def batch_statistics(model: nn.Module):
    """Run ``model``'s norm layers on batch statistics, as in training,
    without changing their running statistics.

    The official SIRFP statistics are taken during training, where batch
    norms normalise by the batch's own statistics. Inside this block every
    batch norm is in train mode except on inputs with one value per channel
    (image pooling on one image), which keep the running statistics; the
    running statistics are restored afterwards. The rest of the model stays
    in its mode.
    """
    norms = [m for m in model.modules() if is_batch_norm(m)]
    saved = [(m, m.training, {k: v.clone() for k, v in m.named_buffers(
        recurse=False)}) for m in norms]

    def use_batch(module, args):
        x = args[0]
        module.train(x.numel() // x.shape[1] > 1)

    handles = [m.register_forward_pre_hook(use_batch) for m in norms]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for module, training, buffers in saved:
                module.train(training)
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)


class RedundancyStatistics:
    """Collects ``S`` and ``E`` on the outputs of named norm layers.

    Args:
        model (nn.Module): The model whose layers are hooked.
        layer_names (Iterable[str]): Norm layers to watch.
        momentum (float | None): EMA rate r (e.g. 0.999); None for a running
            mean. Default: None.
        training_only (bool): Skip forward passes of layers in eval mode
            (validation inside a training run). Default: False.
        gradients (bool): Also collect ``G`` from the gradients that reach
            the layers' scales in every backward pass. Default: False.
        loss_scale (callable, optional): Returns the loss scale in force
            (mixed precision); gradients are divided by it, so ``G`` is
            always kept unscaled. Default: None (no scaling).
    """

    def __init__(self, model: nn.Module, layer_names: Iterable[str],
                 momentum: Optional[float] = None,
                 training_only: bool = False, gradients: bool = False,
                 loss_scale: Optional[Callable[[], float]] = None):
        self.loss_scale = loss_scale
        self.momentum = momentum
        self.training_only = training_only
        self.layer_names = list(layer_names)
        self._padded_maps = PaddedMaps()
        modules = dict(model.named_modules())
        self.redundancy: Dict[str, torch.Tensor] = {}
        self.detail: Dict[str, torch.Tensor] = {}
        self.gradient: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, int] = {}
        self._gradient_counts: Dict[str, torch.Tensor] = {}
        self._handles = [
            modules[name].register_forward_hook(self._hook(name))
            for name in self.layer_names
        ]
        if gradients:
            for name in self.layer_names:
                weight = getattr(modules[name], 'weight', None)
                if isinstance(weight, nn.Parameter) and weight.requires_grad:
                    self._handles.append(weight.register_hook(
                        self._gradient_hook(name, weight)))

    def _gradient_hook(self, name, weight):

        def hook(grad):
            self.update_gradient(name, weight, grad)

        return hook

    def _hook(self, name):

        def hook(module, inputs, output):
            if output.dim() != 4 or (self.training_only
                                     and not module.training):
                return
            # float32 statistics under mixed-precision training too.
            with torch.autocast(output.device.type, enabled=False):
                self.update(name, *map_statistics(output,
                                                  self._padded_maps))

        return hook

    def update(self, name: str, redundancy: torch.Tensor,
               detail: torch.Tensor) -> None:
        """Fold one batch's statistics of ``name`` in."""
        if name not in self.redundancy:
            self.redundancy[name] = torch.zeros_like(redundancy)
            self.detail[name] = torch.zeros_like(detail)
            self.counts[name] = 0
        self.counts[name] += 1
        if self.redundancy[name].device != redundancy.device:  # resumed
            self.redundancy[name] = self.redundancy[name].to(
                redundancy.device)
            self.detail[name] = self.detail[name].to(detail.device)
        rate = self.momentum if self.momentum is not None else \
            1 - 1 / self.counts[name]
        self.redundancy[name].mul_(rate).add_(redundancy, alpha=1 - rate)
        self.detail[name].mul_(rate).add_(detail, alpha=1 - rate)

    def update_gradient(self, name: str, weight: torch.Tensor,
                        grad: torch.Tensor) -> None:
        """Fold in ``|dL/dgamma|`` of a norm layer's scale ``gamma``.

        As in DCFP and SIRFP's second stage, a channel's value changes only
        when ``gamma * dL/dgamma > 0``; elsewhere it keeps its old value.
        """
        value = grad.detach().abs().float()
        if self.loss_scale is not None:
            value = value / float(self.loss_scale())
        # An overflowed mixed-precision step gives no value (the official
        # code's would stay inf for good).
        take = ((weight.detach() * grad.detach() > 0) &
                torch.isfinite(value)).float()
        value = torch.nan_to_num(value, nan=0.0, posinf=0.0)
        if name not in self.gradient:
            self.gradient[name] = torch.zeros_like(value)
            self._gradient_counts[name] = torch.zeros_like(value)
        elif self.gradient[name].device != value.device:  # resumed
            self.gradient[name] = self.gradient[name].to(value.device)
            self._gradient_counts[name] = self._gradient_counts[name].to(
                value.device)
        counts = self._gradient_counts[name].add_(take)
        rate = torch.full_like(value, self.momentum) \
            if self.momentum is not None else 1 - 1 / counts.clamp(min=1)
        rate = torch.where(take > 0, rate, torch.ones_like(rate))
        self.gradient[name].mul_(rate).add_(value * (1 - rate))

    def synchronize(self) -> None:
        """Average the statistics over all ranks (no-op without a group).

        Ranks must have seen the same number of batches, as under DDP.
        """
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            return
        world = dist.get_world_size()
        for stats in (self.redundancy, self.detail, self.gradient):
            for name in sorted(stats):
                dist.all_reduce(stats[name])
                stats[name].div_(world)

    def state_dict(self) -> dict:
        """The statistics on the CPU, for a checkpoint."""
        def cpu(stats):
            return {k: v.detach().cpu() for k, v in stats.items()}

        return dict(redundancy=cpu(self.redundancy), detail=cpu(self.detail),
                    gradient=cpu(self.gradient), counts=dict(self.counts),
                    gradient_counts=cpu(self._gradient_counts))

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` (layers this object watches)."""
        names = set(self.layer_names)

        def own(stats):
            return {k: v.clone() for k, v in stats.items() if k in names}

        self.redundancy = own(state['redundancy'])
        self.detail = own(state['detail'])
        self.gradient = own(state['gradient'])
        self._gradient_counts = own(state['gradient_counts'])
        self.counts = {k: v for k, v in state['counts'].items()
                       if k in names}

    def remove(self) -> None:
        """Detach the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._padded_maps = PaddedMaps()  # frees the buffer
