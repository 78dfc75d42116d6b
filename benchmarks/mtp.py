"""MTP performance: the cost of one alternation step against a plain
training step of the same model, measured in one run.

DeepLabV3 R50-D8, batch 2 at --size: a plain training step (forward,
backward, SGD step on all weights, train mode), then MTP's steps on the
same weights (scores learned by Adam, weights frozen, as in configs/mtp/):
a segmentation step, a label-free classification step (the dense network's
predictions on the same images as targets) and a classification step on a
labelled batch of 2 images at 224x224. Each figure is the median of --runs
steps after a warm-up.

Example:
    python benchmarks/mtp.py              # 512x512
    python benchmarks/mtp.py --size 256 --runs 2
"""
import argparse
import copy
import warnings

import torch

from common import train_step_seconds

R50 = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--runs', type=int, default=3)
    args = parser.parse_args()
    import mmseg_prune  # noqa: F401
    from mmseg_prune.apis import build_segmentor, load_config
    from mmseg_prune.models import MTPSegmentor
    from mmseg_prune.utils.cli import quiet_logger
    from mmseg_prune.testing import fake_batch
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    with quiet_logger(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        segmentor = build_segmentor(load_config(R50))
        data = fake_batch(segmentor, size=args.size, batch=2)
        plain_model = copy.deepcopy(segmentor).train()
        plain = train_step_seconds(
            plain_model,
            torch.optim.SGD(plain_model.parameters(), lr=1e-4, momentum=0.9),
            data, args.runs)
        del plain_model
        mtp = MTPSegmentor(segmentor, input_shape=(64, 64)).train()
        optimizer = torch.optim.Adam(mtp.gates.parameters(), lr=0.01)
        figures = {}
        mtp.task = 'seg'
        figures['segmentation step'] = train_step_seconds(
            mtp, optimizer, data, args.runs)
        mtp.task = 'cls'
        figures['classification step, label-free'] = train_step_seconds(
            mtp, optimizer, data, args.runs)
        mtp.cls_batch = dict(
            inputs=[torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
                    for _ in range(2)], label=[1, 2])
        figures['classification step, 2 labelled 224x224 images'] = \
            train_step_seconds(mtp, optimizer, data, args.runs)
    scores = sum(v.numel() for v in mtp.gates.scores.values())
    print(f'DeepLabV3 R50-D8, batch 2 at {args.size}x{args.size}, '
          f'{len(mtp.gates.scores)} score vectors ({scores} channels)')
    print(f'  plain training step: {plain:.2f} s')
    for name, seconds in figures.items():
        print(f'  MTP {name}: {seconds:.2f} s, ratio {seconds / plain:.3f}')
    cycle = (figures['segmentation step'] +
             figures['classification step, label-free']) / 2
    print(f'  MTP alternation, period seg=1 cls=1, label-free: '
          f'{cycle:.2f} s per step, ratio {cycle / plain:.3f}')


if __name__ == '__main__':
    main()
