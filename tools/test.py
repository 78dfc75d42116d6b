"""mmseg's tools/test.py with mmseg-prune registered; same arguments.

Example:
    python tools/test.py work_dirs/demo/pruned_config.py work_dirs/demo/pruned.pth
"""
from mmseg_prune.utils.entry import run_mmseg_tool

if __name__ == '__main__':
    run_mmseg_tool('test.py')
