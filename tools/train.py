"""mmseg's tools/train.py with mmseg-prune registered; same arguments.

Example:
    python tools/train.py work_dirs/demo/pruned_config.py
"""
from mmseg_prune.utils.entry import run_mmseg_tool

if __name__ == '__main__':
    run_mmseg_tool('train.py')
