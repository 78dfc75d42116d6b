"""Prune an mmseg segmentor to a FLOPs or latency budget.

Writes WORK_DIR/pruned.pth, WORK_DIR/pruned_config.py (a complete config that
mmseg's tools/test.py, tools/train.py and mmseg.apis accept) and
WORK_DIR/pruning_report.json, and prints what was gained.

Example:
    python tools/prune.py mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py \
        --checkpoint dense.pth --criterion l1 --flops-reduction 0.5

With ``--latency-reduction R`` it removes R of the latency measured on this
device instead (CUDA where present, else the CPU at torch's thread count),
costed from a per-layer latency table cached under ``~/.cache/mmseg_prune``
(``$MMSEG_PRUNE_CACHE``); time on a quiet machine.
"""
import argparse
import json
import os.path as osp
import sys
import warnings

from mmengine.runner import set_random_seed

from mmseg_prune.apis import (build_criterion, build_report, build_segmentor,
                              check_data, default_input_shape,
                              dense_architecture, load_config,
                              prune_segmentor, save_pruned, work_dir_for)
from mmseg_prune.apis.report import (layers_table, metrics_table,
                                     summary_table)
from mmseg_prune.apis.runner import (CalibrationBatches,
                                     check_trainable_batch, evaluate,
                                     finetune)
from mmseg_prune.utils import PruneError
from mmseg_prune.utils.cli import CfgOptionsAction, run_cli
from mmseg_prune.utils.io import atomic_write_text, check_writable_dir


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description='Prune an mmseg segmentor to a FLOPs or latency '
        'budget.')
    parser.add_argument('config', help='config path or mmseg::NAME')
    parser.add_argument('--checkpoint', help='weights of the dense model')
    parser.add_argument('--work-dir', help='output folder '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--criterion', help='random, l1, bn_scale, fpgm, '
                        'taylor, sirfp, mtp (default: the config\'s '
                        'pruning.criterion, else l1)')
    parser.add_argument('--flops-reduction', type=float,
                        help='fraction of FLOPs (MACs) to remove, in (0, 1)')
    parser.add_argument('--latency-reduction', type=float,
                        help='fraction of the latency measured on this '
                        'device to remove, in (0, 1), instead of FLOPs')
    parser.add_argument('--input-shape', type=int, nargs=2,
                        metavar=('H', 'W'), help='input at which FLOPs are '
                        'counted (default: the config\'s crop size)')
    parser.add_argument('--allow-partial-checkpoint', action='store_true',
                        help='load a --checkpoint that lacks some of the '
                        'model\'s tensors (each is printed) instead of '
                        'refusing it')
    parser.add_argument('--data-root', help='data root of every dataset')
    parser.add_argument('--finetune', type=int, metavar='ITERS',
                        help='fine-tune the pruned model for ITERS '
                        'iterations with the config\'s schedule (shortened '
                        'to ITERS) in WORK_DIR/finetune')
    parser.add_argument('--distill', action='store_true',
                        help='fine-tune with a logit distillation loss from '
                        'the dense model (needs --finetune and '
                        '--checkpoint)')
    parser.add_argument('--eval', action='store_true',
                        help='evaluate dense and pruned (after fine-tuning) '
                        'on the config\'s test set and add the metrics to '
                        'the report')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config keys, e.g. '
                        'pruning.budget.mode=uniform')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.data_root)
    pruning = cfg.pruning
    criterion_cfg = args.criterion or pruning.criterion
    criterion = build_criterion(criterion_cfg)
    criterion_name = criterion_cfg if isinstance(criterion_cfg, str) else \
        criterion_cfg['type']
    cost, reduction = budget_target(args, pruning)
    input_shape = args.input_shape or pruning.input_shape or \
        default_input_shape(cfg)
    work_dir = args.work_dir or work_dir_for(args.config)
    check_writable_dir(work_dir)
    if args.finetune is not None and args.finetune < 1:
        raise PruneError(f'--finetune needs a positive number of iterations, '
                         f'got {args.finetune}')
    if args.distill and not (args.finetune and args.checkpoint):
        raise PruneError('--distill needs --finetune ITERS and --checkpoint '
                         '(the dense teacher\'s weights)')
    if criterion.requires_data or args.finetune:
        check_data(cfg)
    if args.eval:
        check_data(cfg, 'test_dataloader')
    # Initial weights, calibration order and random scores repeat run to run.
    set_random_seed(cfg.get('randomness', {}).get('seed') or 0)
    if args.checkpoint is None and not cfg.model.get('pruned_weights'):
        warnings.warn('no --checkpoint given: pruning the initial weights; '
                      'scores then mean little, pass trained weights')
    model = build_segmentor(cfg, args.checkpoint,
                            allow_partial=args.allow_partial_checkpoint)
    if args.finetune:
        check_trainable_batch(model, cfg.train_dataloader.batch_size,
                              input_shape)
    batches = None
    if criterion.requires_data:
        batches = CalibrationBatches(cfg, pruning.calibration_batches)
    what = 'FLOPs (MACs)' if cost == 'flops' else 'latency'
    print(f'pruning {reduction:.0%} of the {what} at input '
          f'1x3x{input_shape[0]}x{input_shape[1]} with {criterion_name}')
    result = prune_segmentor(model, criterion, reduction, input_shape,
                             batches=batches, ignore=pruning.ignore,
                             budget=dict(pruning.budget, cost=cost),
                             bias_compensation=pruning.bias_compensation)
    report = build_report(result, criterion_name, reduction)
    paths = save_pruned(result, cfg, work_dir, report)
    print(layers_table(result.layers))
    print(summary_table(report))
    try:
        tune_and_evaluate(args, cfg, work_dir, paths, report)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f'the pruned model in {work_dir} is complete; fine-tuning or '
            'evaluation did not finish') from None
    for kind, path in paths.items():
        print(f'{kind:>10}: {path}')
    return 0


def budget_target(args, pruning):
    """('flops' or 'latency', the share to remove): the command line's
    over the config's; a latency target needs no FLOPs one."""
    if args.flops_reduction is not None and \
            args.latency_reduction is not None:
        raise PruneError('give --flops-reduction or --latency-reduction, '
                         'not both')
    latency = pruning.latency_reduction if args.latency_reduction is None \
        else args.latency_reduction
    if pruning.budget.get('cost') == 'latency' and latency is None:
        raise PruneError('pruning.budget.cost is "latency" but no latency '
                         'target is set: pass --latency-reduction R or set '
                         'pruning.latency_reduction')
    if latency is not None and args.flops_reduction is None:
        cost, reduction, flag = 'latency', latency, '--latency-reduction'
    else:
        # 0 is a value, not "not given": refused below, never defaulted.
        cost, flag = 'flops', '--flops-reduction'
        reduction = pruning.flops_reduction \
            if args.flops_reduction is None else args.flops_reduction
    if not 0 < reduction < 1:
        raise PruneError(f'{flag} must be in (0, 1), got {reduction}; e.g. '
                         '0.5 removes half')
    return cost, reduction


def tune_and_evaluate(args, cfg, work_dir, paths, report):
    """``--finetune`` and ``--eval`` of the pruned model."""
    if args.finetune:
        distill = dict(teacher=dense_architecture(cfg),
                       checkpoint=osp.abspath(args.checkpoint)) \
            if args.distill else None
        paths['finetuned'] = finetune(
            load_config(paths['config']), osp.join(work_dir, 'finetune'),
            args.finetune, distill)
        report['finetune_iters'] = args.finetune
        report['distill'] = args.distill
    if args.eval:
        report['evaluation'] = dict(
            dense=evaluate(cfg, osp.join(work_dir, 'eval_dense'),
                           args.checkpoint),
            pruned=evaluate(load_config(paths['config']),
                            osp.join(work_dir, 'eval_pruned'),
                            paths.get('finetuned')))
        print(metrics_table(report['evaluation']))
    if args.finetune or args.eval:
        atomic_write_text(paths['report'], json.dumps(report, indent=2))


if __name__ == '__main__':
    sys.exit(run_cli(main))
