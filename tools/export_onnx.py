"""Export an mmseg segmentor, dense or pruned, to ONNX and check it.

The exported graph takes the image as mmseg's data preprocessor hands it to
the model (1x3xHxW, normalised, in the preprocessor's channel order) and
returns the segmentation logits at the input size (1xKxHxW), as
``model.predict`` computes them before the argmax. The tool runs the file
with onnxruntime, checks that its logits equal torch's (--atol), and prints
both latencies, timed in turn in one process.

Needs onnx and onnxruntime: ``pip install mmseg-prune[deploy]``.

Example:
    python tools/export_onnx.py work_dirs/demo/pruned_config.py \
        --shape 512 512 --out work_dirs/demo/pruned.onnx
"""
import argparse
import os.path as osp
import sys

import torch

from mmseg_prune.analysis import check_quiet, time_interleaved
from mmseg_prune.apis import (SegmentationLogits, build_segmentor,
                              default_input_shape, export_onnx, load_config,
                              onnx_max_difference, onnxruntime_session)
from mmseg_prune.apis.export import onnxruntime_module
from mmseg_prune.utils import PruneError
from mmseg_prune.utils.cli import CfgOptionsAction, run_cli
from mmseg_prune.utils.io import check_writable_dir


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description='Export a segmentor (dense or pruned) to ONNX, check it '
        'against torch with onnxruntime and time both.')
    parser.add_argument('config', help='config path or mmseg::NAME '
                        '(a pruned_config.py loads its own weights)')
    parser.add_argument('--checkpoint', help='weights to load')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input shape (default: the config crop size)')
    parser.add_argument('--out', help='ONNX file (default: beside the '
                        'config, named after it)')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest accepted |onnxruntime - torch| of the '
                        'logits')
    parser.add_argument('--runs', type=int, default=5,
                        help='timed runs of each (median and spread)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    onnxruntime_module()  # before any work: the extra may be missing
    cfg = load_config(args.config, args.cfg_options)
    shape = tuple(args.shape or default_input_shape(cfg))
    out = args.out or osp.splitext(
        args.config.replace('mmseg::', '').replace('/', '_')
        if args.config.startswith('mmseg::') else args.config)[0] + '.onnx'
    check_writable_dir(osp.dirname(osp.abspath(out)))
    model = build_segmentor(cfg, args.checkpoint)
    export_onnx(model, shape, out, args.opset)
    print(f'wrote {out} ({osp.getsize(out) / 2**20:.1f} MiB), input '
          f'1x3x{shape[0]}x{shape[1]}')

    threads = torch.get_num_threads()
    session = onnxruntime_session(out, threads)
    inputs = torch.randn(1, 3, *shape,
                         generator=torch.Generator().manual_seed(0))
    diff = onnx_max_difference(session, model, inputs)
    print(f'onnxruntime vs torch: logits of a 1x3x{shape[0]}x{shape[1]} '
          f'image, max |diff| {diff:.2e} (atol {args.atol:g})')
    if not diff <= args.atol:
        raise PruneError(f'onnxruntime\'s logits differ from torch\'s by '
                         f'{diff:.2e} > --atol {args.atol:g}: the exported '
                         'graph does not compute the model')
    logits = SegmentationLogits(model, shape).eval()
    feed = {'inputs': inputs.numpy()}

    def torch_run():
        with torch.no_grad():
            return logits(inputs)

    check_quiet(threads)
    latency = time_interleaved(
        dict(torch=torch_run, onnxruntime=lambda: session.run(None, feed)),
        runs=args.runs)
    print(f'CPU latency ({threads} threads, median ± IQR over {args.runs} '
          f'runs): torch {latency["torch"]}, onnxruntime '
          f'{latency["onnxruntime"]}')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
