"""The latency budget: the estimator built on a latency table, and the
search that meets a latency target.

Timing is replaced by a deterministic stand-in (a layer costs its
multiply-adds, the model its layers plus a fixed overhead), so that these
tests check the search, not this machine's load; benchmarks/latency_budget.py
times real models.
"""
import os.path as osp

import pytest
import torch

from mmseg_prune.analysis import LatencyTable
from mmseg_prune.analysis import count_complexity
from mmseg_prune.pruner import (FlopsBudget, FlopsEstimator, LatencyEstimator,
                                prune_graph, prune_segmentor)
from mmseg_prune.structure import SegmentorGraph
from mmseg_prune.utils import PruneError

from tests.helpers import OVERHEAD_MS, fake_model_ms, fake_ms

SIZE = (64, 64)


def test_estimator_follows_the_table(small_model, fake_timing):
    graph = SegmentorGraph(small_model, SIZE)
    dense = fake_model_ms(small_model)
    estimator = LatencyEstimator(graph, LatencyTable(), dense, None)
    assert estimator.estimate({}) == pytest.approx(dense)
    half = {g.name: torch.arange(g.size // 2) for g in graph.groups}
    pruned = graph.prune(half)
    # Layers costed exactly (the stand-in is bilinear in the channels); the
    # overhead scales with them in the estimate, stays whole when timed.
    layers = fake_model_ms(pruned) - OVERHEAD_MS
    dense_layers = dense - OVERHEAD_MS
    assert estimator.estimate(half) == pytest.approx(
        layers + OVERHEAD_MS * layers / dense_layers, rel=0.02)


def test_latency_budget_meets_its_target(small_model, fake_timing):
    # A tolerance tighter than the default 5%, so that the estimate (which
    # scales the overhead it cannot see) needs correcting.
    budget = dict(cost='latency', tolerance=0.01)
    result = prune_segmentor(small_model, 'l1', 0.4, SIZE, budget=budget)
    dense, pruned = fake_model_ms(small_model), fake_model_ms(result.model)
    assert abs(pruned / (0.6 * dense) - 1) <= 0.01
    assert result.latency['reduction'] == pytest.approx(1 - pruned / dense)
    assert result.latency['device'] == 'cpu'
    assert osp.isfile(result.latency['table'])
    assert result.latency['timed_layers'] > 0
    # The same pruning again reads every layer from the cached table.
    again = prune_segmentor(small_model, 'l1', 0.4, SIZE, budget=budget)
    assert again.latency['timed_layers'] == 0
    assert {k: v.tolist() for k, v in again.keep.items()} == \
        {k: v.tolist() for k, v in result.keep.items()}


def test_where_latency_follows_flops_the_ranking_is_the_flops_budgets(
        small_model, fake_timing):
    graph = SegmentorGraph(small_model, SIZE)
    estimator = LatencyEstimator(
        graph, LatencyTable(), fake_model_ms(small_model),
        FlopsEstimator(graph, count_complexity(small_model, SIZE)))
    weights = estimator.rank_weights()
    assert set(weights) == {g.name for g in graph.groups}
    # The stand-in costs a layer its multiply-adds; the FLOPs counter also
    # counts the norms that follow convs, a few percent more.
    assert max(weights.values()) / min(weights.values()) < 1.1


def test_groups_slow_per_flop_lose_more(small_model, fake_timing,
                                        monkeypatch):
    """Layers at full resolution (the stem's) take 5 times longer per
    multiply-add: with scores alike in every group the FLOPs budget cuts
    every group about alike, the latency budget cuts the stem's deeper."""

    def slow_stem(self, call, cin, cout):
        slow = call.kind == 'conv' and call.spec[-1][0] >= SIZE[0] // 2
        return fake_ms(call, cin, cout) * (5 if slow else 1)

    monkeypatch.setattr(LatencyTable, '_time', slow_stem)
    graph = SegmentorGraph(small_model, SIZE)
    generator = torch.Generator().manual_seed(0)
    scores = {g.name: torch.rand(g.size, generator=generator) + 0.5
              for g in graph.groups}
    stem = {g.name for g in graph.groups
            if any(m.name.startswith('backbone.stem.') for m in g.members)}
    assert stem

    def kept_share(cost):
        result = prune_graph(graph, scores, FlopsBudget(0.3, cost=cost))
        return {name: len(keep) / len(scores[name])
                for name, keep in result.keep.items()}

    flops, latency = kept_share('flops'), kept_share('latency')
    assert max(flops.values()) - min(flops.values()) < 0.25
    others = [v for n, v in latency.items() if n not in stem]
    assert all(latency[n] < min(others) - 0.2 for n in stem)
    assert all(latency[n] < flops[n] - 0.2 for n in stem)


def test_bad_latency_settings_are_refused(small_model):
    with pytest.raises(PruneError, match='cost must be "flops" or "latency"'):
        FlopsBudget(0.5, cost='time')
    with pytest.raises(PruneError, match='--latency-reduction 0.5'):
        FlopsBudget(1.5, cost='latency')
    from mmseg_prune.hooks import PruningHook
    with pytest.raises(PruneError, match='tools/prune.py --latency'):
        PruningHook([dict(iter=1, flops_reduction=0.5)], criterion='l1',
                    budget=dict(cost='latency'))
