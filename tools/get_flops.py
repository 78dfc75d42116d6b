"""FLOPs (MACs), parameters and CPU latency of an mmseg segmentor.

Counts one image of shape 1x3xHxW through the inference path (no auxiliary
head), as mmseg's tools/analysis_tools/get_flops.py does, with the same
counter (mmengine.analysis), and prints a per-stage breakdown. Works for dense
configs and for the pruned_config.py that tools/prune.py writes.

Example:
    python tools/get_flops.py work_dirs/demo/pruned_config.py \
        --checkpoint work_dirs/demo/pruned.pth --shape 512 512 --latency
"""
import argparse
import sys

from prettytable import PrettyTable

import torch

from mmseg_prune.analysis import (check_quiet, count_complexity,
                                  measure_latency)
from mmseg_prune.apis import build_segmentor, default_input_shape, load_config
from mmseg_prune.utils.cli import CfgOptionsAction, human, run_cli


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description='FLOPs (MACs), params and latency of a segmentor.')
    parser.add_argument('config', help='config path or mmseg::NAME')
    parser.add_argument('--checkpoint', help='weights (for a pruned config '
                        'the shapes come from the config anyway)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input shape (default: the config crop size)')
    parser.add_argument('--latency', action='store_true',
                        help='also time inference on the CPU (median and '
                        'interquartile spread; warns when other work keeps '
                        'the cores busy)')
    parser.add_argument('--runs', type=int, default=5,
                        help='timed runs for --latency')
    parser.add_argument('--threads', type=int,
                        help='CPU threads for --latency (default: torch\'s)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    return parser.parse_args(argv)


def stage_table(complexity) -> PrettyTable:
    """FLOPs (MACs) of the top-level modules and their children."""
    table = PrettyTable(['module', 'FLOPs (MACs)', 'share'])
    table.align['module'] = 'l'
    total = complexity.flops
    for name, flops in complexity.by_module.items():
        if name and name.count('.') <= 1 and flops > 0:
            table.add_row([name, human(flops), f'{flops / total:.1%}'])
    return table


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    shape = args.shape or default_input_shape(cfg)
    model = build_segmentor(cfg, args.checkpoint)
    complexity = count_complexity(model, shape)
    print(stage_table(complexity))
    summary = PrettyTable(['input shape', 'FLOPs (MACs)', 'Params'])
    summary.add_row([f'1x3x{shape[0]}x{shape[1]}', human(complexity.flops),
                     human(complexity.params)])
    if args.latency:
        if args.threads:
            torch.set_num_threads(args.threads)
        check_quiet(torch.get_num_threads())
        latency = measure_latency(model, shape, runs=args.runs)
        summary.add_column(
            f'CPU latency ({torch.get_num_threads()} threads, median ± '
            'IQR)', [str(latency)])
    print(summary)
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
