"""mmseg's tools/train.py with mmseg-prune registered; same arguments.

Example:
    python tools/train.py work_dirs/demo/pruned_config.py
    python tools/train.py CONFIG --cfg-options load_from=DENSE.pth
    python tools/train.py CONFIG --cfg-options load_from=DENSE.pth --resume

With ``--resume``, a config whose ``load_from`` names the starting weights
of the run (MTP's recipes) resumes from the latest checkpoint of the work
dir: MMEngine itself would try to resume from ``load_from``, which holds no
training state.
"""
import argparse
import os.path as osp
import sys

from mmseg_prune.utils.entry import run_mmseg_tool


def resume_args(argv):
    """Extra arguments that make ``--resume`` resume the run in the work
    dir when the config sets ``load_from``; a clear error when there is
    nothing to resume."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('config')
    parser.add_argument('--work-dir')
    parser.add_argument('--resume', action='store_true')
    from mmseg_prune.utils.cli import CfgOptionsAction
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    args, _ = parser.parse_known_args(argv)
    if not args.resume:
        return []
    from mmengine.runner import find_latest_checkpoint

    from mmseg_prune.apis import load_config
    from mmseg_prune.utils import PruneError
    cfg = load_config(args.config, args.cfg_options)
    if not cfg.get('load_from'):
        return []
    work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    latest = find_latest_checkpoint(work_dir) if osp.isdir(work_dir) \
        else None
    if latest is None:
        raise PruneError(
            f'--resume found no checkpoint in {work_dir} to resume; '
            f'load_from={cfg.load_from} holds the starting weights, not a '
            'training state: run without --resume to start from them')
    print(f'resuming from {latest} (load_from={cfg.load_from} was the '
          'starting point of this run)')
    return ['--cfg-options', 'load_from=None']


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    sys.argv = [sys.argv[0]] + argv + resume_args(argv)
    run_mmseg_tool('train.py')
    return 0


if __name__ == '__main__':
    from mmseg_prune.utils.cli import run_cli
    sys.exit(run_cli(main))
