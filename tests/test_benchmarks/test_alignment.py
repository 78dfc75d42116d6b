"""benchmarks/alignment.py on one small family: every round_to setting is
pruned to the budget, timed against the dense model, and tabulated."""
import json
import os.path as osp
import subprocess
import sys

from tests.helpers import TESTS_DIR

ROOT = osp.dirname(TESTS_DIR)


def test_one_family(tmp_path):
    out = str(tmp_path / 'alignment.md')
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'benchmarks', 'alignment.py'),
         '--families', 'stdc', '--size', '64', '--runs', '2', '--threads',
         '1', '--round-to', '1', '16', '--profile', '3', '--allow-busy',
         '--out', out],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row, = json.load(open(osp.splitext(out)[0] + '.json'))['rows']
    assert list(row['settings']) == ['1', '16']
    for setting in row['settings'].values():
        assert abs(1 - setting['flops'] / row['dense_flops'] - 0.5) <= 0.005
        assert setting['ms'] > 0 and setting['spread'] >= 0
    assert row['dense_ms'] > 0
    assert len(row['ops']) == 3
    table = open(out).read()
    assert '| stdc (' in table and 'round_to=16' in table
    assert '### stdc' in table  # the profile
