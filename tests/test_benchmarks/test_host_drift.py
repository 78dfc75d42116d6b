"""benchmarks/host_drift.py: windows of a model and the reference timed in
turn, and the summary of how far their medians moved."""
import os.path as osp
import subprocess
import sys

from tests.helpers import ROOT, load_script

SCRIPT = osp.join(ROOT, 'benchmarks', 'host_drift.py')


def test_summary_gives_each_range_over_its_lowest_median():
    module = load_script('benchmarks', 'host_drift')
    windows = [(0.0, 30.0, 26.0), (5.0, 45.0, 26.5), (10.0, 36.0, 27.3)]
    assert module.summary(windows) == (
        'model 30.0–45.0 ms (50% apart); reference 26.0–27.3 ms (5% apart)')
    # Of ten windows, the lowest and the highest are left out.
    ten = [(float(i), 40.0 + i, 20.0) for i in range(10)]
    ten[3] = (3.0, 10.0, 2.0)
    assert module.summary(ten) == (
        'model 40.0–48.0 ms (20% apart); reference 20.0–20.0 ms (0% apart)')


def test_a_short_run_writes_its_windows(tmp_path):
    out = tmp_path / 'drift.md'
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--size', '64', '--seconds', '0.5',
         '--runs', '2', '--threads', '1', '--allow-busy', '--out', str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [ln.split('|') for ln in out.read_text().splitlines()
            if ln.startswith('| ') and not ln.startswith('| start')]
    assert rows and all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)
    assert 'Window medians, 10th to 90th percentile: model ' in \
        out.read_text()
