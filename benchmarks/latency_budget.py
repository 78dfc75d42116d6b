"""What the latency budget gains over the FLOPs budget at equal latency.

For each family (by default DeepLabV3 R50-D8, STDC1 and BiSeNetV2: the
zoo's configs and seeded weights, L1 scores, round_to=16, 1x3x512x512):

1. the FLOPs budget prunes 50% of the FLOPs; timed against the dense model,
   that removes a share L of the latency;
2. the latency budget prunes to a latency reduction of L (what
   ``tools/prune.py --latency-reduction L`` does), timing its per-layer
   latency table on the way (the layers timed and the seconds they took are
   recorded, beside the whole pruning's time);
3. afterwards, the latency-pruned model is timed against the dense one
   again, in turn, with twice the runs the search used: whether it is
   within 5% of its target;
4. dense, FLOPs-pruned and latency-pruned are timed in turn in one
   process, with as many runs: what each pruned model keeps at its
   measured latency (FLOPs, parameters, the share of the normalised L1
   score mass).

``--proxy WORK_DIR`` adds the same comparison on a trained model: the
criteria study's DeepLabV3 R18-D8 proxy (benchmarks/criteria.py caches its
data and dense checkpoint in WORK_DIR), with val mIoU zero-shot and after
the study's 100-iteration fine-tune, per criterion and seed.

Every finished item is cached in --work-dir/results.json, so a rerun resumes;
the latency tables are kept in --work-dir/cache.
Time on a quiet machine: the script refuses to start on a busy one.

Example:
    python benchmarks/latency_budget.py --out docs/latency_budget.md \\
        --proxy work_dirs/criteria
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FAMILIES = {
    'deeplabv3': 'deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'stdc': 'stdc/stdc1_4xb12-80k_cityscapes-512x1024.py',
    'bisenetv2': 'bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py',
}
#: As the zoo prunes (benchmarks/zoo.py, docs/alignment.md).
ROUND_TO = 16
SIZE = 512
#: The proxy comparison: criteria and seeds.
PROXY_CRITERIA = ['l1', 'sirfp']
PROXY_SEEDS = [0, 1]
FINETUNE_ITERS = 100
WORK_DIR = 'work_dirs/latency_budget'


def log(message):
    print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)


def score_mass_kept(model, keep, shape):
    """Share of the L1 scores, normalised by each group's mean as the
    FLOPs budget ranks them, that ``keep`` keeps."""
    from mmseg_prune.criteria import L1Criterion
    from mmseg_prune.pruner import normalize_scores
    from mmseg_prune.structure import SegmentorGraph
    graph = SegmentorGraph(model, shape)
    scores = L1Criterion()(graph, None)
    total = kept = 0.0
    for group in graph.groups:
        values = normalize_scores(scores[group.name], 'mean')
        total += float(values.sum())
        kept += float(values[keep[group.name]].sum()) \
            if group.name in keep else float(values.sum())
    return kept / total


def compare(dense, flops_result, shape, prune_latency):
    """Prune to the FLOPs result's measured latency reduction, then time
    dense and both pruned models in turn; the figures of both."""
    from mmseg_prune.analysis import segmentor_forward, time_interleaved
    from mmseg_prune.analysis import LatencyTimer
    timer = LatencyTimer(dense, shape)
    target = timer.compare(flops_result.model)['reduction']
    log(f'  FLOPs budget: latency reduction {target:.3f} measured')
    start = time.perf_counter()
    latency_result = prune_latency(target)
    seconds = time.perf_counter() - start
    searched = latency_result.latency
    log(f'  latency budget: {seconds:.0f} s, of which '
        f'{searched["table_seconds"]:.0f} s for {searched["timed_layers"]} '
        f'layer timings; it measured a reduction of '
        f'{searched["reduction"]:.3f}')
    latency_run = segmentor_forward(latency_result.model.eval(), shape)
    again = time_interleaved(dict(dense=timer.dense_run, latency=latency_run),
                             2 * timer.runs, warmup=1)
    times = time_interleaved(
        dict(dense=timer.dense_run,
             flops=segmentor_forward(flops_result.model.eval(), shape),
             latency=latency_run), 2 * timer.runs, warmup=1)
    record = dict(target=target, runs=2 * timer.runs, prune_seconds=seconds,
                  table_seconds=searched['table_seconds'],
                  timed_layers=searched['timed_layers'],
                  searched_reduction=searched['reduction'],
                  threads=torch.get_num_threads())
    for name, timed in times.items():
        record[f'{name}_ms'] = timed.median
        record[f'{name}_spread'] = timed.spread
    for name, result in (('flops', flops_result),
                         ('latency', latency_result)):
        record[f'{name}_flops'] = result.pruned.flops / result.dense.flops
        record[f'{name}_params'] = result.pruned.params / result.dense.params
    record['latency_target_error'] = \
        again['latency'].median / ((1 - target) * again['dense'].median) - 1
    record['again_spread'] = max(t.spread for t in again.values())
    return record, latency_result


def run_family(family):
    from mmseg_prune.apis import build_segmentor, load_config, prune_segmentor
    from mmseg_prune.utils.cli import quiet_logger
    shape = (SIZE, SIZE)
    with quiet_logger():
        cfg = load_config('mmseg::' + FAMILIES[family])
        torch.manual_seed(0)  # the zoo's dense weights
        dense = build_segmentor(cfg).eval()
        flops_result = prune_segmentor(dense, 'l1', 0.5, shape,
                                       budget=dict(round_to=ROUND_TO))
        record, latency_result = compare(
            dense, flops_result, shape, lambda target: prune_segmentor(
                dense, 'l1', target, shape,
                budget=dict(round_to=ROUND_TO, cost='latency')))
    record['flops_score_mass'] = score_mass_kept(dense, flops_result.keep,
                                                 shape)
    record['latency_score_mass'] = score_mass_kept(
        dense, latency_result.keep, shape)
    return dict(record, config=FAMILIES[family])


def run_proxy(work_dir, criterion, seed, out_dir):
    """The comparison on the criteria study's trained proxy: val mIoU of
    both pruned models, zero-shot and fine-tuned."""
    import types
    sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
    import criteria as study
    from mmengine.runner import set_random_seed

    from mmseg_prune.apis import (build_report, build_segmentor,
                                  load_config, prune_segmentor, save_pruned)
    from mmseg_prune.apis.runner import CalibrationBatches, evaluate
    from mmseg_prune.utils.cli import quiet_logger
    args = types.SimpleNamespace(precision='fp32', size=128,
                                 finetune_iters=FINETUNE_ITERS)
    cfg = study.study_config('deeplabv3_r18', osp.join(work_dir, 'data',
                                                       'seg'), args)
    with open(osp.join(work_dir, 'deeplabv3_r18', 'dense.json')) as f:
        dense_record = json.load(f)
    shape = tuple(cfg.pruning.input_shape)
    with quiet_logger():
        dense = build_segmentor(cfg, dense_record['checkpoint']).eval()

        def prune(reduction, budget):
            set_random_seed(seed)
            batches = CalibrationBatches(cfg, cfg.pruning.calibration_batches,
                                         seed=seed)
            return prune_segmentor(copy.deepcopy(dense), criterion,
                                   reduction, shape, batches=batches,
                                   budget=budget)

        flops_result = prune(0.5, {})
        record, latency_result = compare(
            dense, flops_result, shape,
            lambda target: prune(target, dict(cost='latency')))
        for name, result in (('flops', flops_result),
                             ('latency', latency_result)):
            run_dir = osp.join(out_dir, f'{criterion}-{seed}', name)
            paths = save_pruned(result, cfg, run_dir,
                                build_report(result, criterion, 0.5))
            pruned_cfg = study._quiet(load_config(paths['config']))
            record[f'{name}_miou_zero_shot'] = evaluate(
                pruned_cfg, osp.join(run_dir, 'eval'))['mIoU']
            record[f'{name}_miou_finetuned'] = study._finetune_and_evaluate(
                args, cfg, dense_record, pruned_cfg, run_dir, seed, False)
    return dict(record, criterion=criterion, seed=seed,
                miou_dense=dense_record['miou'])


def write_table(results, args):
    lines = [
        '# The latency budget against the FLOPs budget', '',
        f'Made by `python benchmarks/latency_budget.py --out {args.out}'
        + (f' --proxy {args.proxy}' if args.proxy else '')
        + (f' --work-dir {args.work_dir}' if args.work_dir != WORK_DIR
           else '') + '` on '
        f'{time.strftime("%Y-%m-%d")}, CPU, '
        f'{torch.get_num_threads()} threads.', '',
        'The FLOPs budget removes 50% of the FLOPs; its model, timed '
        'against the dense one, removes a share of the latency (the '
        'target). The latency budget prunes to that target. Then dense and '
        'both pruned models are timed in turn (median ± interquartile '
        'spread). "off target" is the latency-pruned model\'s latency '
        'against its target, timed afterwards against the dense model '
        'alone (the larger spread of those two timings in brackets); FLOPs '
        'and params are shares of the dense model; "L1 mass" is the share '
        'of the normalised L1 scores kept. Prune time: the latency budget\'s whole pruning, and the '
        'part of it spent timing layers for its table (the run\'s table '
        'starts empty).',
        '',
        '| family | dense (ms) | FLOPs budget (ms) | latency budget (ms) '
        '| off target | FLOPs kept: FLOPs / latency budget | params kept '
        '| L1 mass kept | prune time (table) |',
        '|---|---|---|---|---|---|---|---|---|'
    ]
    for family in FAMILIES:
        r = results.get(f'family:{family}')
        if not r:
            continue
        lines.append(
            f'| {family} | {r["dense_ms"]:.1f} ± {r["dense_spread"]:.0%} '
            f'| {r["flops_ms"]:.1f} ± {r["flops_spread"]:.0%} '
            f'| {r["latency_ms"]:.1f} ± {r["latency_spread"]:.0%} '
            f'| {r["latency_target_error"]:+.1%} ({r["again_spread"]:.0%}) '
            f'| {r["flops_flops"]:.3f} / {r["latency_flops"]:.3f} '
            f'| {r["flops_params"]:.3f} / {r["latency_params"]:.3f} '
            f'| {r["flops_score_mass"]:.3f} / {r["latency_score_mass"]:.3f} '
            f'| {r["prune_seconds"]:.0f} s ({r["timed_layers"]} layers, '
            f'{r["table_seconds"]:.0f} s) |')
    proxy = [r for k, r in results.items() if k.startswith('proxy:')]
    if proxy:
        lines += [
            '', '## On a trained model (the criteria study\'s proxy)', '',
            f'DeepLabV3 R18-D8 at 128x128, dense val mIoU '
            f'{proxy[0]["miou_dense"]:.2f}; the same pairs of budgets, then '
            f'val mIoU zero-shot and after the study\'s {FINETUNE_ITERS}-'
            'iteration fine-tune.', '',
            '| criterion | seed | dense / FLOPs / latency budget (ms) '
            '| off target | FLOPs kept | mIoU zero-shot | mIoU fine-tuned |',
            '|---|---|---|---|---|---|---|'
        ]
        for r in sorted(proxy, key=lambda r: (r['criterion'], r['seed'])):
            lines.append(
                f'| {r["criterion"]} | {r["seed"]} | {r["dense_ms"]:.1f} / '
                f'{r["flops_ms"]:.1f} / {r["latency_ms"]:.1f} '
                f'| {r["latency_target_error"]:+.1%} '
                f'({r["again_spread"]:.0%}) '
                f'| {r["flops_flops"]:.3f} / {r["latency_flops"]:.3f} '
                f'| {r["flops_miou_zero_shot"]:.1f} / '
                f'{r["latency_miou_zero_shot"]:.1f} '
                f'| {r["flops_miou_finetuned"]:.1f} / '
                f'{r["latency_miou_finetuned"]:.1f} |')
    text = '\n'.join(lines) + '\n'
    from mmseg_prune.utils.io import atomic_write_text
    atomic_write_text(args.out, text)
    atomic_write_text(osp.splitext(args.out)[0] + '.json',
                      json.dumps(results, indent=1, sort_keys=True))
    return text


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--families', nargs='+', default=list(FAMILIES),
                        choices=list(FAMILIES))
    parser.add_argument('--proxy', help='the criteria study\'s work dir '
                        '(trained proxy and data); adds the mIoU comparison')
    parser.add_argument('--work-dir', default=WORK_DIR)
    parser.add_argument('--out', default='docs/latency_budget.md')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import mmseg_prune  # noqa: F401
    from mmseg_prune.analysis import check_quiet
    from mmseg_prune.utils.io import atomic_write_text
    check_quiet(torch.get_num_threads(), strict=True)
    os.makedirs(args.work_dir, exist_ok=True)
    # Its own latency tables: the first pruning of a family times them.
    os.environ['MMSEG_PRUNE_CACHE'] = osp.join(args.work_dir, 'cache')
    cache = osp.join(args.work_dir, 'results.json')
    results = {}
    if osp.isfile(cache):
        with open(cache) as f:
            results = json.load(f)
    todo = [(f'family:{f}', lambda f=f: run_family(f))
            for f in args.families]
    if args.proxy:
        todo += [(f'proxy:{c}:{s}', lambda c=c, s=s: run_proxy(
            args.proxy, c, s, osp.join(args.work_dir, 'proxy')))
                 for c in PROXY_CRITERIA for s in PROXY_SEEDS]
    for key, run in todo:
        if key in results:
            continue
        log(key)
        results[key] = run()
        atomic_write_text(cache, json.dumps(results, indent=1))
        print(write_table(results, args), flush=True)
    print(write_table(results, args))
    return 0


if __name__ == '__main__':
    sys.exit(main())
