"""Channel alignment (``round_to``) against CPU latency.

For each family (the config benchmarks/zoo.py uses), prune 50% of the FLOPs
(MACs) with L1 at 1x3xSIZExSIZE, once per ``--round-to`` value (1 keeps any
channel count; 8 or 16 keep multiples of it in every group). The dense
model and every pruned one are timed in turn in one process (fixed threads,
seeded weights, warm-up, median of --runs ± interquartile range), so that
the speed-up over the FLOPs ratio of each setting compares alike. The run
refuses to start on a busy machine. ``--profile`` adds, per family, the ops
whose CPU time pruning shrinks least (torch.profiler, one forward each).

Example:
    python benchmarks/alignment.py --families deeplabv3 pidnet segformer \\
        --out docs/alignment.md
"""
import argparse
import json
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from zoo import representative  # noqa: E402


def op_times(model, shape):
    """Op name -> self CPU milliseconds of one forward."""
    from torch.profiler import ProfilerActivity, profile

    from mmseg_prune.analysis import segmentor_forward
    run = segmentor_forward(model, shape)
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return {e.key: e.self_cpu_time_total / 1000
            for e in prof.key_averages()}


def measure(family, round_tos, runs, size, profile_ops):
    """One family's row: FLOPs and latency per alignment."""
    from mmseg_prune.analysis import segmentor_forward, time_interleaved
    from mmseg_prune.apis import build_segmentor, load_config, prune_segmentor
    from mmseg_prune.utils import PruneError
    from mmseg_prune.utils.cli import quiet_logger
    config = representative(family)
    shape = (size, size)
    with quiet_logger():
        torch.manual_seed(0)
        dense = build_segmentor(load_config(f'mmseg::{family}/{config}'))
        pruned, row = {}, dict(family=family, config=config, settings={})
        for step in round_tos:
            try:
                result = prune_segmentor(dense, 'l1', 0.5, shape,
                                         budget=dict(round_to=step))
            except PruneError as exc:  # groups too coarse for the budget
                row['settings'][step] = dict(error=str(exc).split(':')[0])
                continue
            pruned[step] = result.model.eval()
            row['dense_flops'] = result.dense.flops
            row['settings'][step] = dict(flops=result.pruned.flops,
                                         params=result.pruned.params)
            # The budget halves a round_to too coarse for the target.
            if result.round_to != step:
                row['settings'][step]['round_to_used'] = result.round_to
    candidates = dict(dense=segmentor_forward(dense.eval(), shape))
    candidates.update({f'round_to={s}': segmentor_forward(m, shape)
                       for s, m in pruned.items()})
    latency = time_interleaved(candidates, runs, warmup=2)
    row['dense_ms'] = latency['dense'].median
    row['dense_spread'] = latency['dense'].spread
    for step in pruned:
        timed = latency[f'round_to={step}']
        row['settings'][step].update(ms=timed.median, spread=timed.spread)
    if profile_ops and 1 in pruned:
        before, after = op_times(dense, shape), op_times(pruned[1], shape)
        top = sorted(before, key=before.get, reverse=True)[:profile_ops]
        row['ops'] = [(op, before[op], after.get(op, 0.0)) for op in top]
    return row


def summary(row, setting):
    """One setting's latency and FLOPs ratio, or why it has none."""
    if 'error' in setting:
        return setting['error']
    ratio = row['dense_flops'] / setting['flops']
    return f'{setting["ms"]:.0f} ms ({ratio:.2f}x FLOPs)'


def write_markdown(path, rows, command, threads, runs):
    from mmseg_prune.utils.cli import human
    from mmseg_prune.utils.io import atomic_write_text
    steps = list(rows[0]['settings'])
    lines = [
        '# Channel alignment and CPU latency', '',
        f'Made by `{command}` ({time.strftime("%Y-%m-%d")}, {threads} CPU '
        f'threads). L1, 50% of the FLOPs (MACs); dense and pruned models '
        f'timed in turn in one process, median of {runs} runs ± the '
        'interquartile range over the median (the run refuses a busy '
        'machine). Speed-up / FLOPs ratio: 1.00 means latency falls as '
        'much as the FLOPs do.', '',
        '| family | dense (ms) | ' + ' | '.join(
            f'round_to={s}: FLOPs removed, ms, speed-up / FLOPs ratio'
            for s in steps) + ' |',
        '|---|---|' + '---|' * len(steps)]
    for r in rows:
        cells = []
        for s in steps:
            e = r['settings'][s]
            if 'error' in e:
                cells.append(e['error'])
                continue
            ratio = r['dense_flops'] / e['flops']
            speedup = r['dense_ms'] / e['ms']
            fallback = f' (as round_to={e["round_to_used"]})' \
                if 'round_to_used' in e else ''
            cells.append(f'{1 - e["flops"] / r["dense_flops"]:.1%}{fallback}, '
                         f'{e["ms"]:.0f} ± {e["spread"]:.0%}, '
                         f'{speedup:.2f}x / {ratio:.2f}x = '
                         f'{speedup / ratio:.2f}')
        lines.append(f'| {r["family"]} ({human(r.get("dense_flops", 0))}) | '
                     f'{r["dense_ms"]:.0f} ± {r["dense_spread"]:.0%} | '
                     + ' | '.join(cells) + ' |')
    profiled = [r for r in rows if r.get('ops')]
    if profiled:
        lines += ['', '## Where the time goes (round_to=1)', '',
                  'Self CPU time of the ops that take the most in the dense '
                  'model, one profiled forward each; "kept" is pruned over '
                  'dense (0.50 would follow the FLOPs).', '']
        for r in profiled:
            lines += [f'### {r["family"]}', '', '| op | dense (ms) | '
                      'pruned (ms) | kept |', '|---|---|---|---|']
            lines += [f'| {op} | {a:.0f} | {b:.0f} | {b / a:.2f} |'
                      for op, a, b in r['ops'] if a > 0]
            lines.append('')
    atomic_write_text(path, '\n'.join(lines) + '\n')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--families', nargs='+', required=True)
    parser.add_argument('--round-to', type=int, nargs='+', default=[1, 8, 16])
    parser.add_argument('--runs', type=int, default=7)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='list the N ops that take the most time')
    parser.add_argument('--out', default='docs/alignment.md')
    parser.add_argument('--allow-busy', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import mmseg_prune  # noqa: F401 - registers the plugin
    from mmseg_prune.analysis import check_quiet
    from mmseg_prune.utils.io import atomic_write_text
    command = 'python benchmarks/alignment.py ' + ' '.join(sys.argv[1:])
    # Rows of earlier runs are kept; a family named again is re-measured.
    data_path = osp.splitext(args.out)[0] + '.json'
    rows = []
    if osp.exists(data_path):
        with open(data_path) as f:
            earlier = json.load(f)
        rows = [dict(r, settings={int(k): v for k, v in
                                  r['settings'].items()})
                for r in earlier['rows'] if r['family'] not in args.families]
        if rows:
            command = earlier['command'] + '; ' + command
    for family in args.families:
        busy = check_quiet(args.threads, strict=not args.allow_busy)
        start = time.perf_counter()
        row = measure(family, args.round_to, args.runs, args.size,
                      args.profile)
        row['busy_cores'] = busy
        rows.append(row)
        print(f'{family:14s} {time.perf_counter() - start:6.0f} s  dense '
              f'{row["dense_ms"]:.0f} ms  ' + '  '.join(
                  f'r{s}: {summary(row, e)}'
                  for s, e in row['settings'].items()), flush=True)
        atomic_write_text(data_path,
                          json.dumps(dict(command=command, rows=rows),
                                     indent=1))
        write_markdown(args.out, rows, command, args.threads, args.runs)


if __name__ == '__main__':
    main()
