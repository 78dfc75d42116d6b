"""Write a small synthetic dataset in the PASCAL VOC 2012 (+aug) layout.

Example:
    python tools/make_demo_data.py data/demo --num 40 --seed 0
    # and an ImageNet-style folder for MTP's classification task:
    python tools/make_demo_data.py data/demo --classification data/demo_cls
    python tools/prune.py mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py \
        --data-root data/demo

An output folder must be new, empty or written by this tool before; pass
--overwrite to replace any other.
"""
import argparse
import sys

from mmseg_prune.datasets import make_demo_classification, make_demo_dataset
from mmseg_prune.datasets.demo import check_destination
from mmseg_prune.utils import PruneError
from mmseg_prune.utils.cli import run_cli


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('root', help='output folder (the VOC2012 data root)')
    parser.add_argument('--num', type=int, default=40, help='images')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--size', type=int, nargs=2, default=(240, 400),
                        metavar=('MIN', 'MAX'),
                        help='smallest and largest image side (240 400)')
    parser.add_argument('--classification', metavar='DIR',
                        help='also write --num scenes as an ImageNet-style '
                        'folder (DIR/<class>/*.jpg) for MTP')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace output folders this tool did not '
                        'write (their contents are deleted)')
    args = parser.parse_args(argv)
    if args.num < 2:
        raise PruneError('--num must be at least 2')
    if not 8 <= args.size[0] <= args.size[1]:
        raise PruneError(f'--size needs 8 <= MIN <= MAX, got {args.size}')
    # Both folders are checked before either is written.
    check_destination(args.root, args.overwrite)
    if args.classification:
        check_destination(args.classification, args.overwrite)
    counts = make_demo_dataset(args.root, args.num, args.seed,
                               size=args.size, overwrite=args.overwrite)
    print(f'wrote {args.num} images to {args.root}: ' +
          ', '.join(f'{k} {v}' for k, v in counts.items()))
    if args.classification:
        classes = make_demo_classification(
            args.classification, args.num, args.seed, size=args.size,
            overwrite=args.overwrite)
        print(f'wrote {args.num} images in {len(classes)} class folders to '
              f'{args.classification}')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
