import pytest
import torch

from mmseg_prune.apis import (build_criterion, build_segmentor, load_config,
                              prune_segmentor)
from mmseg_prune.pruner import FlopsBudget
from mmseg_prune.criteria.greedy_mewcp import greedy_removal_order

from mmseg_prune.criteria import batch_detail, batch_redundancy
from mmseg_prune.structure import SegmentorGraph, output_layers

from tests.helpers import SMALL, data_batch, fake_batch, producers

SIZE = (64, 64)


def _batches(model, num=2):
    return [data_batch(*fake_batch(model, seed=i)) for i in range(num)]


def _scored(model, **kwargs):
    graph = SegmentorGraph(model, SIZE)
    criterion = build_criterion(dict(type='sirfp', **kwargs))
    return graph, criterion, criterion(graph, _batches(graph.model))


@pytest.fixture(scope='module')
def scored():
    """Graph, criterion and scores of the small model, default settings."""
    return _scored(build_segmentor(load_config(SMALL)))


def test_watches_norm_outputs_and_scores_every_group(scored):
    graph, criterion, scores = scored
    stem = [g for g in graph.groups if g.name == 'backbone.stem.0'][0]
    assert [m.name for m in output_layers(graph, stem)] == ['backbone.stem.1']
    assert set(scores) == {g.name for g in graph.groups}
    for group in graph.groups:
        assert scores[group.name].shape == (group.size, )
        assert torch.isfinite(scores[group.name]).all()


def test_layer_score_is_beta_detail_minus_greedy_row_sum(small_model):
    graph, criterion, scores = _scored(small_model, backbone_beta=0.3)
    stats = criterion.statistics
    name = 'backbone.stem.1'
    _, row_sums = greedy_removal_order(stats.redundancy[name])
    expected = 0.3 * stats.detail[name].double() - row_sums
    torch.testing.assert_close(scores['backbone.stem.0'], expected.float())
    # Head layers use head_beta (0): the pure MEWCP ranking.
    head = 'decode_head.convs.0.bn'
    _, row_sums = greedy_removal_order(stats.redundancy[head])
    torch.testing.assert_close(scores['decode_head.convs.0.conv'],
                               (-row_sums).float())


def test_statistics_are_those_of_the_norm_outputs(small_model):
    """The hook sees the BN output; check S and E against a direct
    computation on the same tensors."""
    graph = SegmentorGraph(small_model, SIZE)
    criterion = build_criterion('sirfp')
    batches = _batches(graph.model, num=1)
    captured = []
    bn = graph.modules['backbone.stem.1']
    handle = bn.register_forward_hook(
        lambda mod, args, out: captured.append(out.detach().clone()))
    criterion(graph, batches)
    handle.remove()
    stats = criterion.statistics
    torch.testing.assert_close(stats.redundancy['backbone.stem.1'],
                               batch_redundancy(captured[0]))
    torch.testing.assert_close(stats.detail['backbone.stem.1'],
                               batch_detail(captured[0]))


def test_residual_group_keeps_a_channel_any_member_keeps(scored):
    graph, criterion, scores = scored
    group = [g for g in graph.groups
             if 'backbone.layer1.0.conv2' in producers(g)][0]
    members = output_layers(graph, group)
    assert len(members) >= 2
    per_member = torch.stack([
        criterion.layer_scores(m.name)[m.idxs].float() for m in members])
    torch.testing.assert_close(scores[group.name], per_member.max(0).values)


def test_gradient_variant(small_model):
    graph, criterion, scores = _scored(small_model, gradient_weight=0.4)
    stats = criterion.statistics
    name = 'backbone.stem.1'
    assert stats.gradient[name].shape == (32, )
    assert (stats.gradient[name] >= 0).all()
    assert stats.gradient[name].sum() > 0
    _, row_sums = greedy_removal_order(stats.redundancy[name])
    # The official weighting: G as the loss-scaled (2**16) gradients give it.
    torch.testing.assert_close(
        scores['backbone.stem.0'],
        (0.4 * 2**16 * stats.gradient[name].double() - row_sums).float())
    assert all(p.grad is None for p in graph.model.parameters())
    criterion.gradient_scale = 1  # the unscaled variant
    torch.testing.assert_close(
        criterion.score(graph)['backbone.stem.0'],
        (0.4 * stats.gradient[name].double() - row_sums).float())


def test_split_budget_cuts_backbone_and_head_at_one_quantile(scored):
    graph, _, scores = scored
    budget = FlopsBudget(0.5, mode='split', normalizer=None, min_keep=1)
    plan = budget._plan_at(budget._rank(graph, scores, 1), 0.3)
    for part in (True, False):
        names = [g.name for g in graph.groups
                 if g.name.startswith('backbone.') == part]
        total = sum(len(scores[n]) for n in names)
        removed = sum(len(scores[n]) - len(plan[n]) for n in names)
        assert removed == int(0.3 * total)


@pytest.mark.parametrize('mode', ['split', 'global'])
def test_prunes_to_the_budget(small_model, mode):
    result = prune_segmentor(small_model, 'sirfp', 0.5, SIZE,
                             batches=_batches(small_model),
                             budget=dict(mode=mode))
    assert abs(result.achieved_reduction - 0.5) <= 0.005


def test_concatenated_group_takes_each_channels_best_member():
    """DeepLabV3+ concatenates c1_bottleneck's 48 channels with the ASPP
    output; each member scores its own slice of the group."""
    cfg = load_config(
        'mmseg::deeplabv3plus/deeplabv3plus_r18-d8_4xb2-80k_cityscapes-'
        '512x1024.py')
    graph, criterion, scores = _scored(build_segmentor(cfg))
    group = next(g for g in graph.groups
                 if 'decode_head.c1_bottleneck.conv' in producers(g))
    members = output_layers(graph, group)
    slices = {m.name: len(m.root_idxs) for m in members}
    assert min(slices.values()) < group.size  # members hold parts
    best = torch.full((group.size, ), -float('inf'), dtype=torch.float64)
    for member in members:
        own = criterion.layer_scores(member.name)[member.idxs]
        for channel, value in zip(member.root_idxs, own.tolist()):
            best[channel] = max(best[channel].item(), value)
    assert torch.isfinite(best).all()
    torch.testing.assert_close(scores[group.name], best.float())
