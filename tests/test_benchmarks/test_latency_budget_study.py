"""benchmarks/latency_budget.py: its table from recorded results, and the
score mass a plan keeps. (The script times real models; the budget itself is
tested with deterministic timing in tests/test_pruner.)"""
import json
import types

import pytest
import torch

from tests.helpers import load_script


def _script():
    return load_script('benchmarks', 'latency_budget')


def _record(**extra):
    return dict(dense_ms=100.0, dense_spread=0.03, flops_ms=60.0,
                flops_spread=0.04, latency_ms=58.0, latency_spread=0.05,
                latency_target_error=0.021, again_spread=0.06,
                flops_flops=0.5, latency_flops=0.55, flops_params=0.5,
                latency_params=0.45, prune_seconds=20.0, table_seconds=3.0,
                timed_layers=40, **extra)


def test_table_from_recorded_results(tmp_path):
    script = _script()
    results = {
        'family:stdc': _record(flops_score_mass=0.7, latency_score_mass=0.8),
        'proxy:l1:0': _record(criterion='l1', seed=0, miou_dense=66.0,
                              flops_miou_zero_shot=3.8,
                              latency_miou_zero_shot=27.6,
                              flops_miou_finetuned=59.2,
                              latency_miou_finetuned=63.5)
    }
    out = str(tmp_path / 'latency_budget.md')
    args = types.SimpleNamespace(out=out, proxy='work_dirs/criteria',
                                 work_dir='work_dirs/latency_budget')
    text = script.write_table(results, args)
    assert text == open(out).read()
    assert ('| stdc | 100.0 ± 3% | 60.0 ± 4% | 58.0 ± 5% | +2.1% (6%) '
            '| 0.500 / 0.550 | 0.500 / 0.450 | 0.700 / 0.800 '
            '| 20 s (40 layers, 3 s) |') in text
    assert '| l1 | 0 | 100.0 / 60.0 / 58.0 | +2.1% (6%) | 0.500 / 0.550 ' \
        '| 3.8 / 27.6 | 59.2 / 63.5 |' in text
    assert '--proxy work_dirs/criteria' in text
    assert json.load(open(tmp_path / 'latency_budget.json')) == results


def test_score_mass_kept(small_model):
    script = _script()
    from mmseg_prune.structure import SegmentorGraph
    graph = SegmentorGraph(small_model, (64, 64))
    everything = {g.name: torch.arange(g.size) for g in graph.groups}
    assert script.score_mass_kept(small_model, everything,
                                  (64, 64)) == pytest.approx(1.0)
    half = {g.name: torch.arange(g.size // 2) for g in graph.groups}
    share = script.score_mass_kept(small_model, half, (64, 64))
    assert 0.2 < share < 0.8
