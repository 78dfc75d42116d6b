"""How far this machine's own speed moves while nothing else runs.

Times one model and a compute-bound reference (a 512x512 matrix product,
which fits in the caches) in turn, window after window, in one process with
a fixed thread count. Where the model's window medians move far more than
the reference's, the machine's memory system moves under it (a shared
host's other tenants): no timing protocol inside the process makes that
model's milliseconds repeat, and only a ratio timed in turn (the zoo's
speed-up) can.

Example:
    python benchmarks/host_drift.py --out docs/host_drift.md
"""
import argparse
import time

#: The reference: this many 512x512 matrix products per run.
REFERENCE_PRODUCTS = 20


def summary(windows):
    """'name low–high ms (how far apart)' for the model and the reference,
    from rows of (seconds, model ms, reference ms): the 10th and 90th
    percentiles of the window medians, so that one odd window does not set
    the range."""
    parts = []
    for name, column in (('model', 1), ('reference', 2)):
        medians = sorted(w[column] for w in windows)
        low, high = medians[len(medians) // 10], \
            medians[-1 - len(medians) // 10]
        parts.append(f'{name} {low:.1f}–{high:.1f} ms '
                     f'({high / low - 1:.0%} apart)')
    return '; '.join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='mmseg::fastscnn/'
                        'fast_scnn_8xb4-160k_cityscapes-512x1024.py')
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--seconds', type=float, default=120)
    parser.add_argument('--runs', type=int, default=9,
                        help='timed runs of each per window')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--allow-busy', action='store_true',
                        help='time even when other work keeps the cores '
                        'busy (the figures then measure the load)')
    parser.add_argument('--out', help='a markdown file for the table')
    args = parser.parse_args()

    import torch

    import mmseg_prune  # noqa: F401
    from mmseg_prune.analysis import (check_quiet, segmentor_forward,
                                      time_interleaved)
    from mmseg_prune.apis import build_segmentor, load_config
    from mmseg_prune.utils.cli import quiet_logger
    from mmseg_prune.utils.io import atomic_write_text
    torch.set_num_threads(args.threads)
    check_quiet(args.threads, strict=not args.allow_busy)
    with quiet_logger():
        torch.manual_seed(0)
        model = build_segmentor(load_config(args.config)).eval()
    a, b = torch.randn(512, 512), torch.randn(512, 512)

    def reference():
        for _ in range(REFERENCE_PRODUCTS):
            a @ b

    candidates = dict(model=segmentor_forward(model, (args.size,) * 2),
                      reference=reference)
    windows, start = [], time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        at = time.perf_counter() - start
        timed = time_interleaved(candidates, args.runs, warmup=1)
        windows.append((at, timed['model'].median,
                        timed['reference'].median))
        print(f'{at:6.1f} s  model {windows[-1][1]:7.1f} ms  reference '
              f'{windows[-1][2]:6.1f} ms', flush=True)
    print(summary(windows))
    if args.out:
        lines = [
            '# Host drift', '',
            'Made by `python benchmarks/host_drift.py --seconds '
            f'{args.seconds:g} --out {args.out}` '
            f'({time.strftime("%Y-%m-%d %H:%M")}; CPU threads: '
            f'{args.threads}). {args.config} at {args.size}x{args.size} and '
            f'{REFERENCE_PRODUCTS} products of 512x512 matrices, timed in '
            f'turn in one process, {args.runs} runs of each per window, '
            'nothing else running.', '',
            f'Window medians, 10th to 90th percentile: {summary(windows)}.',
            '',
            '| start (s) | model (ms) | reference (ms) |', '|---|---|---|']
        lines += [f'| {at:.0f} | {m:.1f} | {r:.1f} |'
                  for at, m, r in windows]
        atomic_write_text(args.out, '\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
