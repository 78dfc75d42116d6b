"""Latency figures that repeat: a quiet machine, fixed threads, warm-up,
interleaved candidates, and the median with its spread.

Two threads on two cores that other jobs share can run 30 times slower than
on a quiet machine, so a figure taken under load measures the load. Before
timing, :func:`check_quiet` looks at how busy the cores are; the candidates
(dense and pruned, torch and onnxruntime) are then timed in one process,
one run of each in turn, so that a change of load hits them alike.
"""
import copy
import math
import os
import time
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.nn as nn

from ..structure import inference_forward
from ..utils.errors import PruneError

#: A median whose interquartile range exceeds this share of it is flagged.
MAX_SPREAD = 0.10


class Latency(NamedTuple):
    """Timed runs of one candidate, in milliseconds."""
    times: List[float]

    @property
    def median(self) -> float:
        ordered = sorted(self.times)
        return ordered[len(ordered) // 2]

    @property
    def spread(self) -> float:
        """Interquartile range over the median (0.05 = 5%)."""
        ordered = sorted(self.times)
        n = len(ordered)
        if n < 2:
            return 0.0
        low, high = ordered[n // 4], ordered[n - 1 - n // 4]
        return (high - low) / self.median if self.median else 0.0

    @property
    def steady(self) -> bool:
        return self.spread <= MAX_SPREAD

    def __str__(self) -> str:
        flag = '' if self.steady else ' (unsteady)'
        return f'{self.median:.1f} ms ± {self.spread:.0%}{flag}'


def busy_cores(interval: float = 0.5) -> Optional[float]:
    """Cores kept busy by other work over ``interval`` seconds (Linux
    ``/proc/stat``); None where it cannot be read."""
    def sample():
        with open('/proc/stat') as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 == total0:
        return 0.0
    busy = 1 - (idle1 - idle0) / (total1 - total0)
    return busy * (os.cpu_count() or 1)


def check_quiet(threads: int, strict: bool = False,
                interval: float = 0.5) -> Optional[float]:
    """Warn (or, ``strict``, refuse) when other work leaves fewer than
    ``threads`` cores free; returns the busy cores measured."""
    busy = busy_cores(interval)
    cores = os.cpu_count() or 1
    if busy is None or cores - busy >= threads - 0.25:
        return busy
    message = (f'the machine is busy: {busy:.1f} of {cores} cores are in use '
               f'by other work, and timing needs {threads} free; latency '
               'taken now measures the load, not the model. Stop the other '
               'jobs, or time with fewer threads')
    if strict:
        raise PruneError(message)
    warnings.warn(message)
    return busy


def time_interleaved(candidates: Dict[str, Callable[[], object]],
                     runs: int = 5, warmup: int = 2,
                     clock: Optional[Callable[[], float]] = None
                     ) -> Dict[str, Latency]:
    """Time each candidate ``runs`` times, one run of each in turn, after
    ``warmup`` untimed runs of each.

    Returns:
        dict[str, Latency]: Name -> its timed runs.
    """
    clock = clock or time.perf_counter
    for _ in range(warmup):
        for run in candidates.values():
            run()
    times = {name: [] for name in candidates}
    for _ in range(runs):
        for name, run in candidates.items():
            start = clock()
            run()
            times[name].append((clock() - start) * 1000)
    return {name: Latency(t) for name, t in times.items()}


def paired_speedup(slow: Latency, fast: Latency) -> float:
    """How many times faster ``fast`` ran than ``slow``: the median over
    the turns of :func:`time_interleaved` of the two runs' ratio.

    Each turn's two runs see the same state of the machine, so a change of
    state between turns (a shared host's memory bandwidth moves a
    memory-bound model by a third within a minute) cancels, where the ratio
    of the two medians can take them from different states.
    """
    ratios = sorted(a / b for a, b in zip(slow.times, fast.times))
    return ratios[len(ratios) // 2]


def runs_to_span(ms: float, span_ms: float = 3000, least: int = 9,
                 most: int = 100) -> int:
    """Timed runs of a ``ms`` forward that together span ``span_ms``,
    between ``least`` and ``most``: the median of a few short runs is
    noise."""
    return min(max(math.ceil(span_ms / max(ms, 1e-3)), least), most)


def segmentor_forward(segmentor: nn.Module,
                      input_shape: Sequence[int]) -> Callable[[], object]:
    """One tensor-mode inference of ``segmentor`` on a fixed random image,
    without autograd; the segmentor must be in eval mode.

    The image takes the device and dtype of the segmentor's parameters. On
    CUDA each run ends with ``torch.cuda.synchronize``, so that a clock
    around it measures the kernels, not their launch.
    """
    parameter = next(segmentor.parameters())
    inputs = torch.randn(1, 3, *input_shape,
                         generator=torch.Generator().manual_seed(0)).to(
                             parameter.device, parameter.dtype)
    cuda = parameter.device.type == 'cuda'

    def run():
        with torch.no_grad():
            outputs = inference_forward(segmentor, inputs)
        if cuda:
            torch.cuda.synchronize(parameter.device)
        return outputs

    return run


def measure_latency(segmentor: nn.Module, input_shape: Sequence[int],
                    warmup: int = 2, runs: int = 5) -> Latency:
    """Latency of one tensor-mode inference of ``segmentor``.

    Args:
        segmentor (nn.Module): The segmentor; its mode is restored.
        input_shape (tuple[int, int]): (H, W).
        warmup (int): Untimed runs first. Default: 2.
        runs (int): Timed runs. Default: 5.

    Returns:
        Latency: The timed runs (``.median`` in ms, ``.spread``).
    """
    was_training = segmentor.training
    segmentor.eval()
    try:
        return time_interleaved(
            dict(model=segmentor_forward(segmentor, input_shape)), runs,
            warmup)['model']
    finally:
        segmentor.train(was_training)


class LatencyTimer:
    """Times candidates against a dense model, in turn, on CUDA where
    present, else on the CPU (with a warning when other work keeps its cores
    busy).

    Args:
        model (nn.Module): The dense segmentor (left as it is; a copy is
            timed).
        input_shape (tuple[int, int]): (H, W).
        runs (int, optional): Timed runs of each. Default: as many as take
            about 3 s of the dense model (between 9 and 100), since the
            median of a few runs is noise.

    Attributes:
        dense_ms (float): Median latency of the dense model alone, timed
            once on construction.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int],
                 runs: Optional[int] = None):
        self.device = torch.device(
            'cuda' if torch.cuda.is_available() else 'cpu')
        if self.device.type == 'cpu':
            check_quiet(torch.get_num_threads())
        self.input_shape = input_shape
        self.dense_run = segmentor_forward(self._ready(model), input_shape)
        self.dense_ms = time_interleaved(dict(dense=self.dense_run),
                                         runs or 5, warmup=1)['dense'].median
        self.runs = runs or runs_to_span(self.dense_ms)

    def _ready(self, model: nn.Module) -> nn.Module:
        return copy.deepcopy(model).to(self.device).eval()

    def compare(self, candidate: nn.Module) -> dict:
        """Median ms (and spread) of dense and ``candidate``, timed in
        turn, and the reduction measured."""
        times = time_interleaved(
            dict(dense=self.dense_run, pruned=segmentor_forward(
                self._ready(candidate), self.input_shape)),
            self.runs, warmup=1)
        dense, pruned = times['dense'], times['pruned']
        return dict(dense_ms=dense.median, pruned_ms=pruned.median,
                    dense_spread=dense.spread, pruned_spread=pruned.spread,
                    reduction=1 - pruned.median / dense.median)
