"""Prune one config of every mmseg model-zoo family and tabulate the result.

Each family runs in a subprocess with a time limit, so one failure or hang
does not stop the table. For every family: build the dense model, prune 50%
of its FLOPs (MACs) with the L1 criterion at 1x3x512x512, check that the
pruned model rebuilds from its pruned_config.py with identical outputs, and
time dense and pruned inference on the CPU, in turn, with a fixed thread
count (median of --runs runs and its spread). It refuses to time on a busy
machine.

``--device cuda`` adds the GPU's figures to the rows instead: dense and
pruned in turn at batch 1, fp32 then fp16, each forward ended by
``torch.cuda.synchronize``, the median of 50 after a warm-up. Families are
pruned in parallel there (``--jobs``), and timed one at a time.

Example:
    python benchmarks/zoo.py --out docs/zoo.md
    python benchmarks/zoo.py --families deeplabv3 pspnet --out /tmp/zoo.md
    python benchmarks/zoo.py --device cuda --jobs 4 --threads 4
"""
import argparse
import fcntl
import importlib.util
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

#: Representative configs where the shortest-name rule picks a poor one.
PREFERRED = {
    'deeplabv3': 'deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'deeplabv3plus': 'deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'pspnet': 'pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'fcn': 'fcn_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'upernet': 'upernet_r50_4xb4-20k_voc12aug-512x512.py',
    'hrnet': 'fcn_hr18_4xb4-20k_voc12aug-512x512.py',
    'segformer': 'segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
    'mobilenet_v2': 'mobilenet-v2-d8_deeplabv3_4xb4-160k_ade20k-512x512.py',
    # The smallest variant of the transformer and real-time families.
    'swin': 'swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_'
    'ade20k-512x512.py',
    'convnext': 'convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py',
    'twins': 'twins_pcpvt-s_fpn_fpnhead_8xb4-80k_ade20k-512x512.py',
    'vit': 'vit_deit-s16_upernet_8xb2-160k_ade20k-512x512.py',
    'segnext': 'segnext_mscan-t_1xb16-adamw-160k_ade20k-512x512.py',
    'pidnet': 'pidnet-s_2xb6-120k_1024x1024-cityscapes.py',
    'ddrnet': 'ddrnet_23-slim_in1k-pre_2xb6-120k_cityscapes-1024x1024.py',
    'poolformer': 'fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py',
    'setr': 'setr_vit-l_naive_8xb2-160k_ade20k-512x512.py',
}
#: A family's process is killed once its resident memory passes this share
#: of the machine's (as the kernel's OOM killer would, minutes later, after
#: the machine has thrashed), and is run again at 256x256.
MEMORY_SHARE = 0.8
#: Seconds between two looks at a family's process.
POLL_S = 2
#: Families that build without an error but need a package to work.
SILENT_NEEDS = {
    # mmseg's MaskFormerHead subclasses mmdet's and silently falls back to
    # BaseModule when mmdet is missing (maskformer_head.py, lines 9-12).
    'maskformer': 'mmdet',
}
#: Errors that mean a family needs a package that is not installed.
EXTRA_PACKAGE_ERRORS = ('No module named', 'is not in the',
                        'Failed to import custom modules',
                        'please install required packages',
                        'needs the package')
#: Folders of the model zoo that hold dataset configs, not model families.
NOT_MODELS = ('dsdl', )


class MissingPackage(Exception):
    """A family needs a package that is not installed."""


def zoo_root():
    import mmseg
    return osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs')


def representative(family):
    """The family's preferred config, else its shortest 512x512 one."""
    names = sorted(n for n in os.listdir(osp.join(zoo_root(), family))
                   if n.endswith('.py'))
    if family in PREFERRED and PREFERRED[family] in names:
        return PREFERRED[family]
    square = [n for n in names if '512x512' in n] or names
    return min(square, key=lambda n: (len(n), n)) if square else None


#: Largest output difference accepted between the pruned model and its
#: rebuild from pruned_config.py; a row beyond it fails.
RELOAD_ATOL = 1e-4
#: Keys of a row that --device cuda writes; a CPU run keeps them while
#: the pruning is the same.
CUDA_PREFIX = 'cuda_'
#: Channel multiple of every pruning: oneDNN's fp32 block on AVX-512 CPUs,
#: chosen by measurement (docs/alignment.md); the budget halves it where a
#: family cannot reach 50% that coarsely, and the row records what it used.
ROUND_TO = 16
#: CPU timings run at least --runs times and until the dense runs span
#: this many milliseconds (at most 100 runs).
SPAN_MS = 3000
#: Timed runs of each CUDA figure, after as many warm-up runs.
CUDA_RUNS = 50
#: A family whose CPU speed-up / FLOPs ratio falls below this is profiled,
#: and its row names the ops that keep the pruned model slow.
PROFILE_BELOW = 0.6


def module_times(model, shape):
    """Leaf module name -> milliseconds of one forward (after one untimed
    forward), from hooks around every leaf module.

    Hooks, not torch.profiler: they record one event per module, however
    many ATen calls a compiled mmcv op (PSANet's PSAMask) makes inside.
    """
    from mmseg_prune.analysis import segmentor_forward
    run = segmentor_forward(model, shape)
    run()
    times, started, hooks = {}, {}, []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            hooks.append(module.register_forward_pre_hook(
                lambda m, args, n=name: started.__setitem__(
                    n, time.perf_counter())))
            hooks.append(module.register_forward_hook(
                lambda m, args, out, n=name: times.__setitem__(
                    n, times.get(n, 0.0) +
                    (time.perf_counter() - started[n]) * 1000)))
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return times


def slowest_modules(dense, pruned, shape, count=2):
    """The ``count`` leaf modules that take the most of the pruned model's
    forward, as [module, dense ms, pruned ms]."""
    before, after = module_times(dense, shape), module_times(pruned, shape)
    top = sorted(after, key=after.get, reverse=True)[:count]
    return [[name, before.get(name, 0.0), after[name]] for name in top]


def run_one(config, runs, size, device='cpu', lock=None):
    """Prune one config; print a JSON line with the figures."""
    import torch
    from torch_pruning.utils import flatten_as_list

    import mmseg_prune  # noqa: F401
    from mmseg_prune.analysis import (busy_cores, paired_speedup,
                                      runs_to_span, segmentor_forward,
                                      time_interleaved)
    from mmseg_prune.apis import (build_report, build_segmentor, load_config,
                                  prune_segmentor, save_pruned)
    from mmseg_prune.apis import default_input_shape
    from mmseg_prune.structure import inference_forward
    from mmseg_prune.utils import PruneError
    from mmseg_prune.utils.cli import quiet_logger
    shape = (size, size)
    row = dict(config=config)
    with quiet_logger():
        cfg = load_config('mmseg::' + config)
        torch.manual_seed(0)  # the same dense weights in every run
        dense = build_segmentor(cfg)
        start = time.perf_counter()
        budget = dict(round_to=ROUND_TO)
        try:
            result = prune_segmentor(dense, 'l1', 0.5, shape, budget=budget)
        except PruneError as exc:
            if 'forward fails at input shape' not in str(exc):
                raise
            # Fixed position embeddings (BEiT): use the config's own size.
            shape = tuple(default_input_shape(cfg))
            start = time.perf_counter()
            result = prune_segmentor(dense, 'l1', 0.5, shape, budget=budget)
        row['input'] = list(shape)
        row['round_to'] = result.round_to
        row['prune_s'] = time.perf_counter() - start
        if device == 'cuda':
            # One family at a time on the GPU, while others prune.
            with open(lock, 'w') as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                row.update(cuda_latency(dense.eval(), result.model, shape))
            row['cuda_flops_ratio'] = result.dense.flops / result.pruned.flops
            print('ZOO_RESULT ' + json.dumps(row))
            return
        with tempfile.TemporaryDirectory() as tmp:
            paths = save_pruned(result, cfg, tmp,
                                build_report(result, 'l1', 0.5))
            reloaded = build_segmentor(load_config(paths['config']))
            x = torch.randn(1, 3, *shape)
            outputs = []
            for model in (reloaded, result.model.eval()):
                # Seeded: SegNeXt's Hamburger head draws random NMF bases
                # in every forward (rand_init=True in mmseg), so its dense
                # model differs from itself by about 0.1 between calls.
                torch.manual_seed(0)
                with torch.no_grad():
                    outputs.append(flatten_as_list(
                        inference_forward(model, x)))
            diff = max((a - b).abs().max().item()
                       for a, b in zip(*outputs))
        if not diff <= RELOAD_ATOL:
            raise PruneError(f'the pruned model rebuilt from its '
                             f'pruned_config.py differs by {diff:.1e} > '
                             f'{RELOAD_ATOL:g}')
        # Dense and pruned in turn, so that a change of load hits both;
        # timed again once if either spread is over 10%. Fast models get
        # more runs: five of 20 ms catch one moment of a shared host.
        candidates = dict(dense=segmentor_forward(dense.eval(), shape),
                          pruned=segmentor_forward(result.model, shape))
        once = time_interleaved(dict(dense=candidates['dense']), 1, warmup=1)
        runs = runs_to_span(once['dense'].median, SPAN_MS, least=runs)
        for _ in range(2):
            busy = busy_cores(0.5)
            latency = time_interleaved(candidates, runs, warmup=2)
            if all(t.steady for t in latency.values()):
                break
        row.update(
            dense_flops=result.dense.flops, dense_params=result.dense.params,
            pruned_flops=result.pruned.flops,
            pruned_params=result.pruned.params,
            reload_max_diff=diff, busy_cores=busy, date=time.strftime(
                '%Y-%m-%d'), threads=torch.get_num_threads(), runs=runs,
            dense_ms=latency['dense'].median,
            pruned_ms=latency['pruned'].median,
            dense_spread=latency['dense'].spread,
            pruned_spread=latency['pruned'].spread,
            speedup=paired_speedup(latency['dense'], latency['pruned']),
            dense_times=[round(t, 2) for t in latency['dense'].times],
            pruned_times=[round(t, 2) for t in latency['pruned'].times])
        if speed_ratio(row) < PROFILE_BELOW:
            row['slow_modules'] = slowest_modules(dense, result.model, shape)
        row.update(onnxruntime_latency(dense, result.model, shape, runs))
    print('ZOO_RESULT ' + json.dumps(row))


def cuda_latency(dense, pruned, shape):
    """Dense and pruned timed in turn on the GPU at batch 1, in fp32 and
    then fp16; for a precision that fails, why."""
    import torch

    from mmseg_prune.analysis import segmentor_forward, time_interleaved
    row = dict(cuda_device=torch.cuda.get_device_name())
    for dtype, name in ((torch.float32, 'fp32'), (torch.float16, 'fp16')):
        key = CUDA_PREFIX + name
        try:
            latency = time_interleaved(
                {'dense': segmentor_forward(dense.to('cuda', dtype), shape),
                 'pruned': segmentor_forward(pruned.to('cuda', dtype),
                                             shape)},
                CUDA_RUNS, warmup=CUDA_RUNS // 5)
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            # An mmcv op without a kernel, or a layer without fp16.
            row[key + '_error'] = str(exc).splitlines()[0][:120].replace(
                '|', '/')
            continue
        for model in ('dense', 'pruned'):
            row[f'{key}_{model}_ms'] = latency[model].median
            row[f'{key}_{model}_spread'] = latency[model].spread
    return row


def onnxruntime_latency(dense, pruned, shape, runs):
    """Dense and pruned exported to ONNX and timed in turn with
    onnxruntime (the exported graph also resizes the logits to the input);
    the pruned file's largest difference from torch; or why not."""
    import torch

    from mmseg_prune.analysis import time_interleaved
    from mmseg_prune.apis import (export_onnx, onnx_max_difference,
                                  onnxruntime_session)
    from mmseg_prune.utils import PruneError
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    feed = {'inputs': x.numpy()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sessions = {}
            for name, model in (('dense', dense), ('pruned', pruned)):
                path = osp.join(tmp, name + '.onnx')
                export_onnx(model, shape, path)
                sessions[name] = onnxruntime_session(
                    path, torch.get_num_threads())
            torch.manual_seed(0)  # SegNeXt's random bases, as in the reload
            diff = onnx_max_difference(sessions['pruned'], pruned, x)
            latency = time_interleaved(
                {name: (lambda s=s: s.run(None, feed))
                 for name, s in sessions.items()}, runs, warmup=2)
    except PruneError as exc:
        return dict(onnx_error=str(exc)[:200].replace('|', '/'))
    return dict(onnx_max_diff=diff,
                ort_dense_ms=latency['dense'].median,
                ort_pruned_ms=latency['pruned'].median,
                ort_dense_spread=latency['dense'].spread,
                ort_pruned_spread=latency['pruned'].spread)


def why(stderr, returncode=1):
    """The exception line of a failed family's stderr."""
    import re
    if returncode == -9:
        return 'killed: out of memory (more than this machine\'s RAM)'
    if returncode < 0:
        return f'killed by signal {-returncode}'
    lines = [ln.strip() for ln in stderr.splitlines()]
    errors = [ln for ln in lines
              if re.match(r'^(error: |[\w.]+(Error|Exception): )', ln)]
    line = errors[-1] if errors else (lines[-1] if lines else 'no output')
    return line.replace('|', '/')[:200]


def resident_bytes(pid):
    """Resident memory of process ``pid`` (0 where /proc cannot say)."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory_limit():
    """:data:`MEMORY_SHARE` of the machine's memory, in bytes (None where
    /proc/meminfo cannot say)."""
    try:
        with open('/proc/meminfo') as f:
            total = next(int(line.split()[1]) * 1024 for line in f
                         if line.startswith('MemTotal:'))
    except (OSError, StopIteration):
        return None
    return int(total * MEMORY_SHARE)


def run_capped(cmd, timeout, limit):
    """``subprocess.run(cmd, capture_output=True, text=True,
    timeout=timeout)``, except that the child is killed (return code -9)
    once its resident memory passes ``limit`` bytes (None: no limit)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            out, err = proc.communicate(timeout=POLL_S)
            return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                raise subprocess.TimeoutExpired(cmd, timeout) from None
            if limit is not None and resident_bytes(proc.pid) > limit:
                proc.kill()


def run_family(family, args):
    """One family's row, from a subprocess with a time limit."""
    config = representative(family)
    if config is None:
        return None
    need = SILENT_NEEDS.get(family)
    try:
        if need and importlib.util.find_spec(need) is None:
            raise MissingPackage(need)
        for size in (512, 256):  # 256 only after running out of memory
            proc = run_capped(
                [sys.executable, __file__, '--one', f'{family}/{config}',
                 '--runs', str(args.runs), '--size', str(size),
                 '--threads', str(args.threads), '--device', args.device,
                 '--lock', args.lock], args.timeout, memory_limit())
            if proc.returncode != -9:
                break
        lines = [ln for ln in proc.stdout.splitlines()
                 if ln.startswith('ZOO_RESULT ')]
        row = json.loads(lines[-1][len('ZOO_RESULT '):]) if lines else \
            dict(error=why(proc.stderr, proc.returncode))
    except subprocess.TimeoutExpired:
        row = dict(error=f'timed out after {args.timeout} s')
    except MissingPackage as exc:
        row = dict(error=f'needs the package {exc} (not installed)')
    return dict(row, family=family, config=config)


def merge(old, new, device):
    """``new`` over ``old``, keeping the other device's figures where they
    are of the same pruning (the same ``round_to``)."""
    old = old or {}
    if device == 'cuda':
        new = dict(new)
        if 'error' in new:
            new[CUDA_PREFIX + 'error'] = new.pop('error')
        new = {k: v for k, v in new.items()
               if k.startswith(CUDA_PREFIX) or k in ('family', 'config')}
        same = True
    else:
        same = old.get('round_to', 1) == new.get('round_to', 1)
    kept = {k: v for k, v in old.items()
            if k.startswith(CUDA_PREFIX) != (device == 'cuda') and same}
    return dict(kept, **new)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='docs/zoo.md')
    parser.add_argument('--families', nargs='*')
    parser.add_argument('--timeout', type=int, default=900)
    parser.add_argument('--runs', type=int, default=5,
                        help='timed runs of dense and pruned, in turn')
    parser.add_argument('--threads', type=int, default=2,
                        help='CPU threads of every timing (and pruning)')
    parser.add_argument('--allow-busy', action='store_true',
                        help='time even when other work keeps the cores '
                        'busy (the figures then measure the load)')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu',
                        help='cuda: add GPU latency to the rows')
    parser.add_argument('--jobs', type=int, default=1,
                        help='families pruned at once (--device cuda only)')
    parser.add_argument('--repeat-of', metavar='JSON',
                        help='an earlier run\'s docs/zoo.json: the table '
                        'ends with how far each family\'s timings moved')
    parser.add_argument('--one', help=argparse.SUPPRESS)
    parser.add_argument('--lock', help=argparse.SUPPRESS)
    parser.add_argument('--size', type=int, default=512,
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs > 1 and args.device != 'cuda':
        parser.error('--jobs > 1 needs --device cuda: CPU timings need the '
                     'cores to themselves')
    import torch
    torch.set_num_threads(args.threads)
    if args.one:
        return run_one(args.one, args.runs, args.size, args.device,
                       args.lock)

    from concurrent.futures import ThreadPoolExecutor, as_completed

    from mmseg_prune.analysis import check_quiet
    from mmseg_prune.utils.io import atomic_write_text
    if args.device == 'cuda':
        if not torch.cuda.is_available():
            parser.error('--device cuda: torch sees no GPU here')
    else:
        check_quiet(args.threads, strict=not args.allow_busy)
    families = args.families or sorted(
        f for f in os.listdir(zoo_root())
        if not f.startswith(('_', '.')) and f not in NOT_MODELS
        and osp.isdir(osp.join(zoo_root(), f)))
    # Rows of earlier runs are kept, so that single families can be re-run.
    data_path = osp.splitext(args.out)[0] + '.json'
    rows = []
    if osp.exists(data_path):
        with open(data_path) as f:
            rows = json.load(f)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, \
            ThreadPoolExecutor(args.jobs) as pool:
        args.lock = osp.join(tmp, 'gpu.lock')
        futures = [pool.submit(run_family, f, args) for f in families]
        for done, future in enumerate(as_completed(futures), 1):
            row = future.result()
            if row is None:
                continue
            family = row['family']
            if args.device == 'cuda':
                row[CUDA_PREFIX + 'jobs'] = args.jobs
            old = next((r for r in rows if r['family'] == family), None)
            rows = [r for r in rows if r['family'] != family] + \
                [merge(old, row, args.device)]
            rows.sort(key=lambda r: r['family'])
            atomic_write_text(data_path, json.dumps(rows, indent=1))
            print(f'{family:16s} {time.perf_counter() - start:7.1f} s  '
                  f'{row.get("error", "ok")}', flush=True)
            # Rewritten after every family: an interrupted run keeps its
            # rows.
            write_table(rows, args, done=done == len(futures))


def profiled(row):
    """Why a row's ratio is low: the modules taking the most of its pruned
    forward, with their time dense → pruned; or nothing."""
    if not row.get('slow_modules'):
        return ''
    return '; profiled, most of the pruned forward: ' + ', '.join(
        f'{name} {a:.0f} → {b:.0f} ms' for name, a, b in row['slow_modules'])


def onnx_cell(row):
    """onnxruntime dense → pruned, or why there is none."""
    if 'ort_dense_ms' not in row:
        return row.get('onnx_error', 'not run')
    flag = '' if row['onnx_max_diff'] <= RELOAD_ATOL else \
        f' (differs from torch by {row["onnx_max_diff"]:.0e})'
    return (f'{row["ort_dense_ms"]:.0f} ± {row["ort_dense_spread"]:.0%} → '
            f'{row["ort_pruned_ms"]:.0f} ± {row["ort_pruned_spread"]:.0%}'
            f'{flag}')


def recorded(rows, key):
    """The values of ``key`` over ``rows``, for the table's header."""
    values = sorted({str(r[key]) for r in rows if key in r})
    if not values or any(key not in r for r in rows):
        values.append('not recorded for earlier rows')
    return ' or '.join(values)


def cuda_cell(row):
    """CUDA fp32 and fp16 dense → pruned, or why there are none."""
    if CUDA_PREFIX + 'device' not in row:
        return row.get(CUDA_PREFIX + 'error', 'not run')
    cells = []
    for name in ('fp32', 'fp16'):
        key = CUDA_PREFIX + name
        if key + '_error' in row:
            cells.append(f'{name}: {row[key + "_error"]}')
            continue
        dense, pruned = row[key + '_dense_ms'], row[key + '_pruned_ms']
        unsteady = ' †' if max(row[key + '_dense_spread'],
                               row[key + '_pruned_spread']) > 0.10 else ''
        cells.append(f'{name} {dense:.1f} → {pruned:.1f} '
                     f'({dense / pruned:.2f}x){unsteady}')
    return '; '.join(cells)


def write_table(rows, args, done=True):
    from mmseg_prune.utils.cli import human
    from mmseg_prune.utils.io import atomic_write_text
    ok = [r for r in rows if 'error' not in r]
    timed = [r for r in ok if 'dense_ms' in r]  # on the CPU
    threads = recorded(timed, 'threads')
    runs = sorted(r['runs'] for r in timed if 'runs' in r)
    runs = f'{runs[0]} to {runs[-1]}' if runs else 'not recorded'
    date = recorded(timed, 'date')
    gpus = recorded(ok, CUDA_PREFIX + 'device')
    extra = [r for r in rows if 'error' in r and any(
        m in r['error'] for m in EXTRA_PACKAGE_ERRORS)]
    lines = [
        '# Model-zoo coverage', '',
        *([] if done else ['**Partial: the run was still going.**', '']),
        f'Made by `python benchmarks/zoo.py --out {args.out}'
        + (f' --repeat-of {args.repeat_of}'
           if getattr(args, 'repeat_of', None) else '') + '` (rows of '
        f'earlier runs are kept in {osp.splitext(args.out)[0]}.json; '
        '`--families NAME ...` '
        're-runs some) '
        f'(date: {date}; CPU threads: {threads}). One config '
        'per mmseg 1.2.2 family, pruned by 50% of its FLOPs (MACs) with the '
        f'L1 criterion, keeping multiples of {ROUND_TO} channels (the budget\'s'
        f' round_to; halved where a family cannot reach 50% that coarsely, '
        'shown in the round_to column), at input 1x3x512x512 (a model that cannot run at that '
        'size uses its config\'s crop size, and one that runs out of memory '
        f'or past {MEMORY_SHARE:.0%} of it at that size is run at 256x256, '
        'both shown in the input column); '
        'FLOPs are multiply-adds counted '
        'by mmengine.analysis on the inference path (no auxiliary head). '
        '"reload" is the largest output difference (at the same input) after '
        'rebuilding the pruned model from its pruned_config.py; a family '
        f'whose reload differs by more than {RELOAD_ATOL:g} fails. Latency: '
        f'dense and pruned timed in turn in one process (threads: {threads}, '
        'weights seeded, two warm-up runs each), the median of the runs '
        f'({runs} runs: at least {getattr(args, "runs", 5)}, and enough '
        'for the dense runs to span '
        f'{SPAN_MS / 1000:g} s) ± the interquartile range over the median; '
        'the speed-up is the median of the runs\' ratios, each dense run '
        'over the pruned run beside it; a pair '
        'with a spread over 10% is timed again once, and is marked † if it '
        'stays over. The run refuses to start while other work keeps the '
        'cores busy. onnxruntime latency: both models exported to ONNX as '
        '`tools/export_onnx.py` does and timed the same way on the CPU. ' +
        ('CUDA latency (`--device cuda`, on '
         f'{gpus}): the same pruning, dense and pruned in turn at batch 1, '
         f'fp32 then fp16, {CUDA_RUNS // 5} warm-up runs and the median of '
         f'{CUDA_RUNS}, each forward ended by `torch.cuda.synchronize` '
         '(speed-up in brackets; † marks a spread over 10%), '
         f'{recorded(ok, CUDA_PREFIX + "jobs")} families at a time: one '
         'timed while the others were pruned on the CPU, which a '
         'launch-bound batch-1 timing feels.'
         if any(CUDA_PREFIX + 'device' in r for r in ok) else
         'CUDA latency: no row has figures of this pruning yet '
         '(`--device cuda` adds them).'), '',
        f'Supported: {len(ok)} of {len(rows)} families; '
        f'{len(extra)} need packages that are not installed; '
        f'{len(ok)} of {len(rows) - len(extra)} families that build '
        'without extra packages '
        f'({len(ok) / max(len(rows) - len(extra), 1):.0%}).', '',
        '| family | config | supported | input | round_to | '
        'FLOPs (MACs) dense → pruned | '
        'params dense → pruned | CPU latency dense → pruned (ms) | '
        'speed-up / FLOPs ratio | onnxruntime latency dense → pruned (ms) '
        '| CUDA latency dense → pruned (ms) | pruning time (s) | reload |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|'
    ]
    ratios = sorted(speed_ratio(r) for r in timed)
    if ratios:
        lines[-2:-2] = [
            f'Speed-up / FLOPs ratio on the CPU over the {len(ratios)} timed '
            f'families: median {statistics.median(ratios):.2f}, lowest {ratios[0]:.2f}, '
            f'highest {ratios[-1]:.2f}; {sum(q < 0.85 for q in ratios)} below '
            '0.85; pruned models slower than their dense model: '
            f'{sum(speedup(r) < 1 for r in timed)}.', '']
    for r in rows:
        if 'error' in r:
            lines.append(f'| {r["family"]} | {r["config"]} | no: '
                         f'{r["error"]} | | | | | | | | | | |')
            continue
        if 'dense_flops' not in r:  # only a --device cuda run so far
            lines.append(f'| {r["family"]} | {r["config"]} | not run on '
                         f'the CPU | | | | | | | | {cuda_cell(r)} | | |')
            continue
        flops_ratio = r['dense_flops'] / r['pruned_flops']
        spreads = [r.get('dense_spread'), r.get('pruned_spread')]
        unsteady = ' †' if any(s is not None and s > 0.10
                               for s in spreads) else ''
        if r.get('busy_cores', 0) > 0.5:  # --allow-busy
            unsteady += f' (timed with {r["busy_cores"]:.1f} cores busy)'
        elif spreads[0] is None:
            unsteady += ' (earlier run: no spread recorded)'

        def timing(ms, spread):
            return f'{ms:.0f}' + ('' if spread is None else
                                  f' ± {spread:.0%}')
        lines.append(
            f'| {r["family"]} | {r["config"]} | yes | '
            f'{r["input"][0]}x{r["input"][1]} | {r.get("round_to", 1)} | '
            f'{human(r["dense_flops"])} → {human(r["pruned_flops"])} | '
            f'{human(r["dense_params"])} → {human(r["pruned_params"])} | '
            f'{timing(r["dense_ms"], spreads[0])} → '
            f'{timing(r["pruned_ms"], spreads[1])}{unsteady} | '
            f'{speedup(r):.2f}x / {flops_ratio:.2f}x = '
            f'{speed_ratio(r):.2f}{profiled(r)} | {onnx_cell(r)} | '
            f'{cuda_cell(r)} | '
            f'{r["prune_s"]:.0f} | '
            f'{r["reload_max_diff"]:.0e} |')
    if getattr(args, 'repeat_of', None):
        with open(args.repeat_of) as f:
            lines += agreement(json.load(f), timed, args.repeat_of)
    atomic_write_text(args.out, '\n'.join(lines) + '\n')


def speedup(row):
    """A row's CPU speed-up: the median of its paired runs' ratios, or,
    for rows of earlier runs that kept no runs, the ratio of the
    medians."""
    return row.get('speedup') or row['dense_ms'] / row['pruned_ms']


def speed_ratio(row):
    """A row's CPU speed-up over its FLOPs ratio."""
    return speedup(row) / (row['dense_flops'] / row['pruned_flops'])


def agreement(earlier, timed, name, tolerance=0.10):
    """Markdown lines: how far each family's speed-up and CPU medians moved
    since the run in ``earlier`` (rows of the same pruning and input), and
    how many stayed within ``tolerance``.

    A family agrees when its speed-up does: dense and pruned are timed in
    turn, so the speed-up is what a change of the host's state between the
    runs leaves alone; the medians are shown beside it.
    """
    before = {r['family']: r for r in earlier
              if 'dense_ms' in r and 'error' not in r}
    pairs = [(before[r['family']], r) for r in timed
             if r['family'] in before
             and before[r['family']].get('round_to', 1) == r.get('round_to', 1)
             and before[r['family']]['input'] == r['input']]
    lines = ['', f'## Agreement with the run in {name}', '',
             '| family | speed-up, then → now | dense ms, then → now | '
             'pruned ms, then → now | speed-up / FLOPs ratio, then → now |',
             '|---|---|---|---|---|']
    agree = steady_ms = 0
    for old, new in pairs:
        moves = [new[k] / old[k] - 1 for k in ('dense_ms', 'pruned_ms')]
        moved = speedup(new) / speedup(old) - 1
        agree += abs(moved) <= tolerance
        steady_ms += all(abs(m) <= tolerance for m in moves)
        lines.append(
            f'| {new["family"]} | {speedup(old):.2f}x → {speedup(new):.2f}x '
            f'({moved:+.0%}) | {old["dense_ms"]:.0f} → '
            f'{new["dense_ms"]:.0f} ({moves[0]:+.0%}) | '
            f'{old["pruned_ms"]:.0f} → {new["pruned_ms"]:.0f} '
            f'({moves[1]:+.0%}) | {speed_ratio(old):.2f} → '
            f'{speed_ratio(new):.2f} |')
    lines[3:3] = [f'{agree} of {len(pairs)} families timed in both runs '
                  f'moved by {tolerance:.0%} or less in speed-up; '
                  f'{steady_ms} of them in both medians (ms) too.', '']
    return lines


if __name__ == '__main__':
    main()
