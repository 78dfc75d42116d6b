"""MTPCriterion: the search, the sparsity term, folding and pruning."""
import copy

import pytest
import torch

from mmseg_prune.apis import prune_segmentor
from mmseg_prune.criteria import MTPCriterion
from mmseg_prune.models import check_period, task_at
from mmseg_prune.structure import SegmentorGraph, forward_all_heads
from mmseg_prune.utils import PruneError

from tests.helpers import data_batch, fake_batch

SIZE = (64, 64)
GROUP = 'backbone.layer3.0.conv1'


def _batches(model, count):
    return [data_batch(*fake_batch(model, seed=s)) for s in range(count)]


def _dead_channels(model):
    """Silence the even channels of GROUP: their norm outputs are 0, so no
    task needs them and only the sparsity term acts on their scores."""
    block = model.backbone.layer3[0]
    dead = torch.arange(0, block.conv1.out_channels, 2)
    with torch.no_grad():
        block.conv1.weight[dead] = 0
        block.bn1.weight[dead] = 0
        block.bn1.bias[dead] = 0
    return dead


@pytest.mark.filterwarnings('ignore:MTPSegmentor has no classifier')
def test_sparsity_drives_unneeded_scores_down(small_dense):
    model = copy.deepcopy(small_dense)
    dead = _dead_channels(model)
    graph = SegmentorGraph(model, SIZE)
    criterion = MTPCriterion(period=dict(seg=0, cls=1), sparsity=1e-6,
                             optimizer=dict(type='Adam', lr=0.03))
    criterion.prepare(graph, _batches(model, 40))
    scores = criterion.model.gates.importance()[GROUP]
    alive = torch.ones(len(scores), dtype=torch.bool)
    alive[dead] = False
    assert scores[dead].max() < 0.1
    assert scores[alive].mean() > 0.8
    lowest = set(scores.argsort()[:len(dead)].tolist())
    assert len(lowest & set(dead.tolist())) >= 0.9 * len(dead)
    # Without the sparsity term nothing moves them.
    criterion = MTPCriterion(period=dict(seg=0, cls=1), sparsity=0.0,
                             optimizer=dict(type='Adam', lr=0.05))
    criterion.prepare(SegmentorGraph(copy.deepcopy(model), SIZE),
                      _batches(model, 5))
    assert torch.equal(criterion.model.gates.importance()[GROUP][dead],
                       torch.ones(len(dead)))


@pytest.mark.filterwarnings('ignore:MTPSegmentor has no classifier')
def test_pruned_model_is_the_folded_gated_model(small_dense):
    graph = SegmentorGraph(copy.deepcopy(small_dense), SIZE)
    criterion = MTPCriterion(sparsity=1e-3)
    criterion.prepare(graph, _batches(small_dense, 4))
    gated = criterion.model
    assert gated.searching
    inputs = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        expected = forward_all_heads(gated.segmentor, inputs)
    scores = criterion.score(graph)
    assert not gated.searching
    with torch.no_grad():
        folded = forward_all_heads(graph.model, inputs)
    for before, after in zip(expected, folded):
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert set(scores) == {g.name for g in graph.groups}
    assert any(not torch.equal(s, torch.ones_like(s))
               for s in scores.values())


@pytest.mark.filterwarnings('ignore:MTPSegmentor has no classifier')
def test_prunes_to_the_budget_with_the_lowest_scores_gone(small_dense):
    model = copy.deepcopy(small_dense)
    dead = _dead_channels(model)
    result = prune_segmentor(
        model, dict(type='MTPCriterion', period=dict(seg=1, cls=1),
                    sparsity=1e-6, optimizer=dict(type='Adam', lr=0.05)),
        0.3, SIZE, batches=_batches(model, 20))
    assert abs(result.achieved_reduction - 0.3) <= 0.005
    kept = set(result.keep[GROUP].tolist())
    assert not kept & set(dead.tolist())


def test_alternation_period():
    period = check_period(dict(seg=2, cls=1))
    assert [task_at(i, period) for i in range(7)] == [
        'seg', 'seg', 'cls', 'seg', 'seg', 'cls', 'seg']
    assert [task_at(i, check_period(None)) for i in range(3)] == [
        'seg', 'cls', 'seg']
    for bad in (dict(seg=0, cls=0), dict(seg=-1), dict(every=2)):
        with pytest.raises(PruneError, match='dict\\(seg=S, cls=C\\)'):
            check_period(bad)


def test_needs_data_and_a_search(small_dense):
    graph = SegmentorGraph(copy.deepcopy(small_dense), SIZE)
    with pytest.raises(PruneError, match='needs data'):
        MTPCriterion().prepare(graph, None)
    with pytest.raises(PruneError, match='no searched scores'):
        MTPCriterion().score(graph)


@pytest.mark.filterwarnings('ignore:MTPSegmentor has no classifier')
def test_ignored_auxiliary_head_gets_no_scores(small_dense):
    model = copy.deepcopy(small_dense)
    graph = SegmentorGraph(model, SIZE)
    heads = [g.name for g in graph.groups
             if g.name.startswith('auxiliary_head.')]
    assert heads  # the model has such groups...
    criterion = MTPCriterion(ignore=['auxiliary_head.*'])
    scores = criterion(graph, _batches(model, 2))
    learned = criterion.model.gates.importance()
    assert not any(n.startswith('auxiliary_head.') for n in learned)
    # ...which are kept whole, while the others are scored.
    assert not any(n.startswith('auxiliary_head.') for n in scores)
    assert any(n.startswith('backbone.') for n in scores)
