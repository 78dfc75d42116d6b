"""A per-layer latency table: what each conv and linear layer of a model
takes on this device with a given number of input and output channels.

A layer is timed alone, as a fresh ``nn.Conv2d`` or ``nn.Linear`` with its
kernel, stride, padding, dilation and groups, on an input of the size it
sees in the model. Channel counts are timed at a grid (every eighth of the
layer's width, in multiples of its group's channel step) and read between
grid points bilinearly. Entries are measured when first asked for and kept
in one JSON file per device (CPU model and thread count, or CUDA device, and
the torch version), so a second pruning of the same model on the same
machine times nothing.
"""
import json
import math
import os
import os.path as osp
import platform
import re
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..structure import inference_forward
from ..utils.io import atomic_write_text
from .latency import time_interleaved

#: Grid points per layer width (every eighth of it).
GRID_POINTS = 8
#: Least time spanned by the runs of one entry, in ms.
MIN_TIMED_MS = 30.0


class LayerCall(NamedTuple):
    """One call of a conv or linear layer: what it takes to time it again.

    Attributes:
        kind (str): ``'conv'`` or ``'linear'``.
        spec (tuple): Conv: kernel, stride, padding, dilation, groups,
            whether depthwise, and the input's (H, W). Linear: the number
            of input rows (tokens).
        in_channels (int): Dense input channels (features).
        out_channels (int): Dense output channels (features).
        bias (bool): Whether the layer has a bias.
    """
    kind: str
    spec: tuple
    in_channels: int
    out_channels: int
    bias: bool


def _call_of(module: nn.Module, inputs: torch.Tensor) -> Optional[LayerCall]:
    if isinstance(module, nn.Conv2d) and inputs.dim() == 4:
        depthwise = module.groups > 1 and \
            module.groups == module.in_channels == module.out_channels
        spec = (module.kernel_size, module.stride, module.padding,
                module.dilation, module.groups, depthwise,
                tuple(inputs.shape[-2:]))
        return LayerCall('conv', spec, module.in_channels,
                         module.out_channels, module.bias is not None)
    if isinstance(module, nn.Linear):
        rows = inputs.numel() // inputs.shape[-1]
        return LayerCall('linear', (rows, ), module.in_features,
                         module.out_features, module.bias is not None)
    return None


@torch.no_grad()
def layer_calls(segmentor: nn.Module, input_shape: Sequence[int],
                names: Sequence[str]) -> Dict[str, List[LayerCall]]:
    """The calls of the named conv and linear layers in one inference of a
    (1, 3, H, W) image (a layer called twice is listed twice)."""
    modules = dict(segmentor.named_modules())
    calls = {name: [] for name in names}
    hooks = [
        modules[name].register_forward_hook(
            lambda mod, args, out, name=name: calls[name].append(
                _call_of(mod, args[0])))
        for name in names
    ]
    was_training = segmentor.training
    segmentor.eval()
    try:
        parameter = next(segmentor.parameters())
        inference_forward(segmentor, torch.zeros(
            1, 3, *input_shape, dtype=parameter.dtype,
            device=parameter.device))
    finally:
        segmentor.train(was_training)
        for hook in hooks:
            hook.remove()
    return {name: [c for c in found if c is not None]
            for name, found in calls.items()}


def device_key(device: torch.device) -> str:
    """What a latency table is valid for: the device, the CPU threads and
    torch's version, as a file name."""
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open('/proc/cpuinfo') as f:
                found = re.search(r'model name\s*:\s*(.+)', f.read())
            name = found.group(1) if found else name
        except OSError:
            pass
        name = f'{name}-{torch.get_num_threads()}threads'
    key = f'{device.type}-{name}-torch{torch.__version__}'
    return re.sub(r'[^A-Za-z0-9.+-]+', '_', key)


def default_cache_dir() -> str:
    """``$MMSEG_PRUNE_CACHE``, else ``~/.cache/mmseg_prune``."""
    return os.environ.get('MMSEG_PRUNE_CACHE') or osp.join(
        osp.expanduser('~'), '.cache', 'mmseg_prune')


def grid_step(width: int, multiple: int = 1) -> int:
    """Distance between grid points for a layer ``width`` channels wide:
    an eighth of it, rounded up to ``multiple`` (and, from 128 channels,
    to 16, which CPU kernels handle best: docs/alignment.md)."""
    if width >= 128:
        multiple = math.lcm(multiple, 16)
    return min(width, math.ceil(width / GRID_POINTS / multiple) * multiple)


class LatencyTable:
    """Measured latency of single layers on one device, cached on disk.

    Args:
        device (str | torch.device): Where layers are timed. Default: cpu.
        cache_dir (str, optional): Folder of the table files. Default:
            :func:`default_cache_dir`.
        runs (int): Timed runs per entry at least (their median is kept;
            a fast layer gets as many as span 30 ms, up to 200). Default: 3.
    """

    def __init__(self, device='cpu', cache_dir: Optional[str] = None,
                 runs: int = 3):
        self.device = torch.device(device)
        self.path = osp.join(cache_dir or default_cache_dir(), 'latency',
                             device_key(self.device) + '.json')
        self.runs = runs
        self.entries: Dict[str, float] = {}
        #: Entries timed, and the seconds that took, since loading.
        self.measured, self.seconds = 0, 0.0
        self._unsaved = 0
        if osp.isfile(self.path):
            try:
                with open(self.path) as f:
                    self.entries = dict(json.load(f))
            except (OSError, ValueError):
                self.entries = {}  # a broken table is measured again

    @staticmethod
    def _key(call: LayerCall, cin: int, cout: int) -> str:
        return '|'.join(map(str, (call.kind, call.spec, call.bias, cin,
                                  cout)))

    def _time(self, call: LayerCall, cin: int, cout: int) -> float:
        if call.kind == 'linear':
            layer = nn.Linear(cin, cout, call.bias)
            inputs = torch.randn(call.spec[0], cin)
        else:
            kernel, stride, padding, dilation, groups, depthwise, size = \
                call.spec
            if depthwise:
                cin = cout = groups = min(cin, cout)
            else:
                groups = math.gcd(groups, math.gcd(cin, cout))
            layer = nn.Conv2d(cin, cout, kernel, stride, padding, dilation,
                              groups, call.bias)
            inputs = torch.randn(1, cin, *size)
        layer = layer.to(self.device).eval()
        inputs = inputs.to(self.device)
        cuda = self.device.type == 'cuda'

        def run():
            with torch.no_grad():
                layer(inputs)
            if cuda:
                torch.cuda.synchronize(self.device)

        first = time_interleaved(dict(layer=run), 1, warmup=1)['layer']
        # A fast layer is timed more often: its median then spans at least
        # MIN_TIMED_MS, since a few runs of 0.05 ms are noise.
        runs = min(max(self.runs, math.ceil(MIN_TIMED_MS / max(
            first.median, 1e-3))), 200)
        return time_interleaved(dict(layer=run), runs,
                                warmup=0)['layer'].median

    def entry(self, call: LayerCall, cin: int, cout: int) -> float:
        """Milliseconds of ``call`` at ``cin`` -> ``cout`` channels, timed
        now if the table lacks it."""
        key = self._key(call, cin, cout)
        if key not in self.entries:
            start = time.perf_counter()
            self.entries[key] = self._time(call, cin, cout)
            self.seconds += time.perf_counter() - start
            self.measured += 1
            self._unsaved += 1
            if self._unsaved >= 50:
                self.save()
        return self.entries[key]

    def latency(self, call: LayerCall, cin: int, cout: int,
                steps: Tuple[int, int] = (1, 1)) -> float:
        """Milliseconds of ``call`` at ``cin`` -> ``cout`` channels, read
        linearly between grid points (see :func:`grid_step`; ``steps`` are
        the channel multiples of its input and output). A depthwise conv
        has one width, its output's; below the first grid point the first
        point is read."""
        if call.kind == 'conv' and call.spec[5]:
            return sum(w * self.entry(call, c, c)
                       for c, w in self._between(cout, call.out_channels,
                                                 steps[1]))
        return sum(wi * wo * self.entry(call, i, o)
                   for i, wi in self._between(cin, call.in_channels,
                                              steps[0])
                   for o, wo in self._between(cout, call.out_channels,
                                              steps[1]))

    @staticmethod
    def _between(value: int, width: int, step: int):
        """The grid points around ``value`` with their weights."""
        gap = grid_step(width, step)
        low = min(max(gap * (value // gap), gap), width)
        high = min(low + gap, width)
        if value <= low or high == low:
            return ((low, 1.0), )
        share = (value - low) / (high - low)
        return ((low, 1 - share), (high, share))

    def save(self) -> None:
        """Write the table (atomically; a crash keeps the previous one)."""
        os.makedirs(osp.dirname(self.path), exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.entries, indent=0,
                                                sort_keys=True))
        self._unsaved = 0
