"""benchmarks/zoo.py on one small family: the row it measures and the
table it writes."""
import argparse
import json
import os.path as osp
import subprocess
import sys

import pytest

from tests.helpers import ROOT, load_script

ZOO = osp.join(ROOT, 'benchmarks', 'zoo.py')


def _zoo():
    return load_script('benchmarks', 'zoo')


def test_one_family_row(tmp_path):
    proc = subprocess.run(
        [sys.executable, ZOO, '--one',
         'fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py', '--size', '64',
         '--runs', '3', '--threads', '1'],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines()
             if ln.startswith('ZOO_RESULT ')]
    assert lines, proc.stderr[-3000:]
    row = json.loads(lines[-1][len('ZOO_RESULT '):])
    assert row['input'] == [64, 64]
    assert row['reload_max_diff'] <= 1e-4
    assert 0.45 <= 1 - row['pruned_flops'] / row['dense_flops'] <= 0.55
    for key in ('dense', 'pruned', 'ort_dense', 'ort_pruned'):
        assert row[key + '_ms'] > 0 and row[key + '_spread'] >= 0
    assert row['onnx_max_diff'] <= 1e-4
    # At least --runs, and as many as 3 s of the dense model takes.
    assert row['threads'] == 1 and 3 <= row['runs'] <= 100
    assert len(row['dense_times']) == len(row['pruned_times']) == row['runs']
    ratios = sorted(a / b for a, b in zip(row['dense_times'],
                                          row['pruned_times']))
    assert row['speedup'] == pytest.approx(ratios[len(ratios) // 2],
                                           rel=1e-2)
    assert row['round_to'] in (16, 8, 4, 2, 1)  # halved where too coarse

    zoo = _zoo()
    failed = zoo.why('Traceback ...\nmmseg_prune.utils.errors.PruneError: '
                     'the pruned model rebuilt from its pruned_config.py '
                     'differs by 1.2e-01 > 0.0001\n')
    # Spreads set here: the measured ones depend on the machine's load.
    rows = [dict(row, family='fcn', config='fcn_r18.py', dense_spread=0.02,
                 pruned_spread=0.03),
            dict(error=failed, family='segnext', config='segnext.py'),
            dict(row, family='twins', config='twins.py', pruned_spread=0.3)]
    # A --device cuda run adds its figures to the CPU row of a family.
    cuda = dict(cuda_device='GPU', cuda_fp32_dense_ms=10.0,
                cuda_fp32_pruned_ms=5.0, cuda_fp32_dense_spread=0.01,
                cuda_fp32_pruned_spread=0.02, cuda_flops_ratio=2.0,
                cuda_fp16_error='no fp16 kernel', input=[1, 1],
                family='fcn', config='fcn_r18.py')
    rows[0] = zoo.merge(rows[0], cuda, 'cuda')
    assert rows[0]['input'] == [64, 64] and rows[0]['dense_spread'] == 0.02
    # A CPU run keeps the CUDA figures; a failed CUDA run is no CPU failure.
    again = zoo.merge(rows[0], dict(row, family='fcn'), 'cpu')
    assert again['cuda_fp32_dense_ms'] == 10.0 and again['dense_spread'] \
        == row['dense_spread']
    # ... unless it pruned otherwise: the figures were of another model.
    other = zoo.merge(rows[0], dict(row, family='fcn', round_to=32), 'cpu')
    assert not any(k.startswith('cuda_') for k in other)
    first = zoo.merge(None, cuda, 'cuda')  # a family new to the table
    assert first['family'] == 'fcn' and 'input' not in first
    rows.append(dict(first, family='stdc'))
    failed_on_gpu = zoo.merge(row, dict(error='out of memory'), 'cuda')
    assert 'error' not in failed_on_gpu
    assert failed_on_gpu['cuda_error'] == 'out of memory'
    out = str(tmp_path / 'zoo.md')
    zoo.write_table(rows, argparse.Namespace(out=out))
    table = {ln.split('|')[1].strip(): ln for ln in open(out)
             if ln.startswith('| ') and not ln.startswith('| family')}
    assert '| yes |' in table['fcn'] and '†' not in table['fcn']
    assert ' ± 2% → ' in table['fcn']
    assert 'fp32 10.0 → 5.0 (2.00x); fp16: no fp16 kernel' in table['fcn']
    assert 'not run' in table['twins']  # no CUDA figures
    assert 'not run on the CPU' in table['stdc'] and '(2.00x)' in \
        table['stdc']
    header = open(out).read()
    assert 'CPU threads: 1' in header and \
        f'({row["runs"]} to {row["runs"]} runs: at least 5' in header
    assert 'no: ' in table['segnext'] and 'differs by 1.2e-01' in \
        table['segnext']
    assert '†' in table['twins']  # a spread over 10% is marked
    assert 'Supported: 3 of 4 families' in open(out).read()
    ratio = row['speedup'] / (row['dense_flops'] / row['pruned_flops'])
    assert f'over the 2 timed families: median {ratio:.2f}, lowest ' \
        f'{ratio:.2f}' in header
    assert f'| 64x64 | {row["round_to"]} |' in table['fcn']


def test_agreement_with_an_earlier_run():
    zoo = _zoo()
    base = dict(dense_flops=200, pruned_flops=100, round_to=16,
                input=[512, 512])
    earlier = [dict(base, family='a', dense_ms=100.0, pruned_ms=50.0),
               dict(base, family='b', dense_ms=100.0, pruned_ms=50.0),
               dict(base, family='c', dense_ms=100.0, pruned_ms=50.0,
                    round_to=1),  # another pruning: not compared
               dict(base, family='e', dense_ms=100.0, pruned_ms=50.0,
                    input=[256, 256]),  # another input: not compared
               dict(family='d', error='failed')]
    earlier.append(dict(base, family='f', dense_ms=100.0, pruned_ms=50.0,
                        speedup=2.1))
    now = [dict(base, family='a', dense_ms=105.0, pruned_ms=62.0),
           dict(base, family='b', dense_ms=95.0, pruned_ms=52.0),
           dict(base, family='c', dense_ms=100.0, pruned_ms=50.0),
           dict(base, family='e', dense_ms=100.0, pruned_ms=50.0),
           # The host slowed down by half between the runs; the paired
           # speed-up did not move.
           dict(base, family='f', dense_ms=150.0, pruned_ms=75.0,
                speedup=2.0)]
    lines = zoo.agreement(earlier, now, 'old.json')
    text = '\n'.join(lines)
    assert '2 of 3 families timed in both runs moved by 10% or less in ' \
        'speed-up; 1 of them in both medians (ms) too' in text
    # a: speed-up 100/50 = 2.00 -> 105/62 = 1.69 (-15%); FLOPs ratio 2.
    assert '| a | 2.00x → 1.69x (-15%) | 100 → 105 (+5%) | 50 → 62 ' \
        '(+24%) | 1.00 → 0.85 |' in text
    assert '| b | 2.00x → 1.83x (-9%) | 100 → 95 (-5%) | 50 → 52 (+4%) |' \
        in text
    assert '| f | 2.10x → 2.00x (-5%) | 100 → 150 (+50%) | 50 → 75 ' \
        '(+50%) | 1.05 → 1.00 |' in text
    assert not {'| c |', '| d |', '| e |'} & set(
        line[:5] for line in lines)


def test_a_low_ratio_is_explained_by_a_profile():
    import torch
    zoo = _zoo()
    dense = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3),
                                torch.nn.Conv2d(64, 8, 1))
    pruned = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3),
                                 torch.nn.Conv2d(16, 8, 1))
    for model in (dense, pruned):
        model._forward = model.forward
        model.eval()
    slow = zoo.slowest_modules(dense, pruned, (64, 64))
    assert [name for name, _, _ in slow] in (['0', '1'], ['1', '0'])
    assert all(before > 0 and after > 0 for _, before, after in slow)
    cell = zoo.profiled(dict(slow_modules=[['decode_head.psamask_collect',
                                            5200.0, 5100.0]]))
    assert cell == ('; profiled, most of the pruned forward: '
                    'decode_head.psamask_collect 5200 → 5100 ms')
    assert zoo.profiled({}) == ''


def test_a_family_past_the_memory_limit_is_killed():
    zoo = _zoo()
    grow = [sys.executable, '-c',
            'import time; b = b"x" * (400 * 2**20); time.sleep(30)']
    proc = zoo.run_capped(grow, timeout=60, limit=200 * 2**20)
    assert proc.returncode == -9  # as the OOM killer leaves it
    small = [sys.executable, '-c', 'print("done")']
    proc = zoo.run_capped(small, timeout=60, limit=200 * 2**20)
    assert (proc.returncode, proc.stdout) == (0, 'done\n')
    with pytest.raises(subprocess.TimeoutExpired):
        zoo.run_capped([sys.executable, '-c', 'import time; time.sleep(30)'],
                       timeout=1, limit=None)
