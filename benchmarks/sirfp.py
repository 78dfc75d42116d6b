"""SIRFP performance figures: selection time, statistics overhead and memory.

1. Selection: the greedy MEWCP order and scores of every watched layer of
   DeepLabV3 R101-D8 (statistics from one calibration batch), with this
   package's O(C^2) solver, against the official code's rule (row sums
   recomputed at every step, O(C^3)) on the largest layer.
2. Calibration: one forward pass of DeepLabV3 R50-D8 (batch 4 at --size,
   norm layers on batch statistics, all heads), as SIRFP's calibration runs
   it, with and without the statistics on every watched norm layer; median
   of --runs passes each after a warm-up, interleaved in one run.
3. Overhead: one DeepLabV3 R50-D8 training step (forward, backward, SGD
   step) at --size, with and without the statistics hooks, median of
   --runs steps each after a warm-up, in one run.
4. Memory: the size of the statistics SIRFP keeps for that model.

Example:
    python benchmarks/sirfp.py            # 512x512, as the issue asks
    python benchmarks/sirfp.py --size 256 --runs 2
"""
import argparse
import time

import numpy as np
import torch

from common import train_step_seconds

R50 = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'
R101 = 'mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-20k_voc12aug-512x512.py'


def official_order(weights):
    """The official code's greedy rule: recompute every row sum per step."""
    remaining = list(range(len(weights)))
    order = []
    while remaining:
        sums = weights[np.ix_(remaining, remaining)].sum(1)
        k = remaining[int(np.argmax(sums))]
        order.append(k)
        remaining.remove(k)
    return order


def watched(model, size):
    """The model's graph and the layers SIRFP watches in it."""
    from mmseg_prune.criteria import SIRFPCriterion
    from mmseg_prune.structure import SegmentorGraph
    graph = SegmentorGraph(model, (size, size))
    return graph, SIRFPCriterion.watched_layers(graph)


def selection(size):
    from mmseg_prune.apis import build_segmentor, load_config
    from mmseg_prune.criteria.greedy_mewcp import greedy_removal_order
    from mmseg_prune.criteria import RedundancyStatistics
    from mmseg_prune.structure import forward_all_heads
    graph, names = watched(build_segmentor(load_config(R101)), size)
    recorder = RedundancyStatistics(graph.model, names)
    with torch.no_grad():
        forward_all_heads(graph.model, torch.randn(1, 3, size, size))
    recorder.remove()
    matrices = [recorder.redundancy[n] for n in names]
    start = time.perf_counter()
    for matrix in matrices:
        greedy_removal_order(matrix)
    ours = time.perf_counter() - start
    largest = max(matrices, key=len)
    weights = largest.abs().double().numpy()
    start = time.perf_counter()
    reference = official_order(weights)
    official = time.perf_counter() - start
    assert reference == greedy_removal_order(largest)[0].tolist()
    channels = sum(len(m) for m in matrices)
    print(f'selection, DeepLabV3 R101-D8: {len(matrices)} layers, '
          f'{channels} channels: {ours:.3f} s in all (goal < 1 s)')
    print(f'  largest layer ({len(largest)} channels): official O(C^3) '
          f'rule {official:.2f} s; same order')


def calibration(size, runs):
    from mmseg_prune.apis import build_segmentor, load_config
    from mmseg_prune.criteria import (RedundancyStatistics,
                                        batch_statistics)
    from mmseg_prune.structure import forward_all_heads
    model = build_segmentor(load_config(R50)).eval()
    _, names = watched(model, 64)
    inputs = torch.randn(4, 3, size, size,
                         generator=torch.Generator().manual_seed(0))

    def seconds(hooked):
        recorder = RedundancyStatistics(model, names) if hooked else None
        start = time.perf_counter()
        with torch.no_grad(), batch_statistics(model):
            forward_all_heads(model, inputs)
        if recorder is not None:
            recorder.remove()
        return time.perf_counter() - start

    seconds(True)  # warm-up
    plain, hooked = [], []
    for _ in range(runs):
        plain.append(seconds(False))
        hooked.append(seconds(True))
    plain, hooked = np.median(plain), np.median(hooked)
    print(f'calibration pass, DeepLabV3 R50-D8, batch 4 at {size}x{size}: '
          f'{plain:.2f} s plain, {hooked:.2f} s with the statistics on '
          f'{len(names)} layers: ratio {hooked / plain:.2f} (goal <= 1.4)')


def overhead(size, runs):
    from mmseg_prune.apis import build_segmentor, load_config
    from mmseg_prune.criteria import RedundancyStatistics
    from mmseg_prune.testing import fake_batch
    model = build_segmentor(load_config(R50))
    _, names = watched(model, 64)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    data = fake_batch(model, size=size, batch=2)
    plain = train_step_seconds(model, optimizer, data, runs)
    recorder = RedundancyStatistics(model, names, momentum=0.999,
                                    training_only=True)
    hooked = train_step_seconds(model, optimizer, data, runs)
    recorder.remove()
    memory = sum(t.numel() * t.element_size()
                 for d in (recorder.redundancy, recorder.detail)
                 for t in d.values())
    print(f'training step, DeepLabV3 R50-D8, batch 2 at {size}x{size}: '
          f'{plain:.2f} s plain, {hooked:.2f} s with the statistics hooks '
          f'on {len(names)} layers: ratio {hooked / plain:.3f} '
          '(goal <= 1.15)')
    print(f'statistics memory: {memory / 2**20:.1f} MiB '
          f'({len(recorder.redundancy)} C x C matrices and C-vectors, '
          'float32; the gradient term adds one C-vector per layer)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--runs', type=int, default=3)
    parts = ['selection', 'calibration', 'overhead']
    parser.add_argument('--parts', nargs='+', default=parts, choices=parts)
    args = parser.parse_args()
    import mmseg_prune  # noqa: F401
    from mmseg_prune.utils.cli import quiet_logger
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    with quiet_logger():
        if 'selection' in args.parts:
            selection(64)
        if 'calibration' in args.parts:
            calibration(args.size, args.runs)
        if 'overhead' in args.parts:
            overhead(args.size, args.runs)


if __name__ == '__main__':
    main()
