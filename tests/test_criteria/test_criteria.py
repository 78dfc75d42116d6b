import copy

import numpy as np
import pytest
import torch

from mmseg_prune.apis import build_criterion
from mmseg_prune.criteria import CRITERIA_ALIASES, BaseCriterion
from mmseg_prune.registry import PRUNING_CRITERIA
from mmseg_prune.structure import SegmentorGraph
from mmseg_prune.utils import PruneError
from tests.helpers import data_batch, fake_batch, producers

SIZE = (64, 64)


def _group(graph, name):
    return [g for g in graph.groups if g.name == name][0]


def test_registry_holds_every_baseline():
    for name in ('random', 'l1', 'bn_scale', 'fpgm', 'taylor'):
        assert isinstance(build_criterion(name), BaseCriterion)
        assert CRITERIA_ALIASES[name] in PRUNING_CRITERIA.module_dict
    with pytest.raises(PruneError, match='unknown criterion "l3"'):
        build_criterion('l3')


def test_l1_is_the_filter_norm(small_model):
    graph = SegmentorGraph(small_model, SIZE)
    scores = build_criterion('l1')(graph)
    conv = graph.modules['decode_head.convs.0.conv']
    expected = conv.weight.abs().sum(dim=(1, 2, 3))
    torch.testing.assert_close(scores['decode_head.convs.0.conv'],
                               expected.float())


def test_l1_averages_a_residual_group(small_model):
    graph = SegmentorGraph(small_model, SIZE)
    group = [g for g in graph.groups
             if 'backbone.layer1.0.conv2' in producers(g)][0]
    scores = build_criterion('l1')(graph)[group.name]
    convs = [graph.modules[n] for n in producers(group)
             if isinstance(graph.modules[n], torch.nn.Conv2d)]
    expected = sum(c.weight.abs().sum(dim=(1, 2, 3)) for c in convs) / len(
        convs)
    torch.testing.assert_close(scores, expected.float())


def test_bn_scale_is_gamma(small_model):
    graph = SegmentorGraph(small_model, SIZE)
    bn = graph.modules['decode_head.convs.0.bn']
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(-1, 1, bn.num_features))
    scores = build_criterion('bn_scale')(graph)
    torch.testing.assert_close(scores['decode_head.convs.0.conv'],
                               bn.weight.abs().float())


def test_random_is_seeded(small_model):
    graph = SegmentorGraph(small_model, SIZE)
    first = build_criterion(dict(type='random', seed=1))(graph)
    again = build_criterion(dict(type='random', seed=1))(graph)
    other = build_criterion(dict(type='random', seed=2))(graph)
    name = graph.groups[0].name
    torch.testing.assert_close(first[name], again[name])
    assert not torch.equal(first[name], other[name])


def test_fpgm_scores_every_channel(small_model):
    graph = SegmentorGraph(small_model, SIZE)
    scores = build_criterion('fpgm')(graph)
    for group in graph.groups:
        assert scores[group.name].shape == (group.size, )
        assert torch.isfinite(scores[group.name]).all()


def test_taylor_needs_data_and_uses_it(small_model):
    graph = SegmentorGraph(small_model, SIZE)
    taylor = build_criterion('taylor')
    with pytest.raises(PruneError, match='needs data'):
        taylor(graph)
    inputs, samples = fake_batch(graph.model, size=SIZE[0])
    running_mean = graph.modules['backbone.stem.1'].running_mean.clone()
    scores = taylor(graph, [data_batch(inputs, samples)])
    assert all(torch.isfinite(s).all() for s in scores.values())
    assert scores['decode_head.convs.0.conv'].abs().sum() > 0
    # Gradients are cleared and BN statistics untouched.
    assert all(p.grad is None for p in graph.model.parameters())
    torch.testing.assert_close(graph.modules['backbone.stem.1'].running_mean,
                               running_mean)


def _group_of(graph, producer):
    return next(g for g in graph.groups if producer in producers(g))


def _distance_sums(rows):
    """Sum over j of ||rows_i - rows_j||_2, by explicit pairs."""
    rows = rows.double().numpy()
    return torch.tensor([sum(np.sqrt(((a - b)**2).sum()) for b in rows)
                         for a in rows])


def test_fpgm_equals_hand_distances(small_model):
    # torch-pruning's group FPGM: distances between |w|^2 rows of the
    # conv's filters and of the next conv's input slices, averaged.
    graph = SegmentorGraph(small_model, SIZE)
    group = _group_of(graph, 'backbone.layer1.0.conv1')
    conv1 = graph.modules['backbone.layer1.0.conv1'].weight.detach()
    conv2 = graph.modules['backbone.layer1.0.conv2'].weight.detach()
    out_rows = conv1.flatten(1).square()
    in_rows = conv2.transpose(0, 1).flatten(1).square()
    expected = (_distance_sums(out_rows) + _distance_sums(in_rows)) / 2
    scores = build_criterion('fpgm')(graph)[group.name]
    torch.testing.assert_close(scores.double(), expected, rtol=1e-4,
                               atol=1e-6)


def test_taylor_equals_hand_weight_times_gradient(small_dense):
    # Random norm scales: the initial ResNet's zeroed ones would block the
    # gradients of this block, and every value would be 0.
    graph = SegmentorGraph(copy.deepcopy(small_dense), SIZE)
    group = _group_of(graph, 'backbone.layer1.0.conv1')
    model = graph.model
    inputs, samples = fake_batch(model, size=SIZE[0])
    batch = data_batch(inputs, samples)
    # The gradients by hand: one eval-mode loss, backward.
    reference = copy.deepcopy(model).eval()
    data = reference.data_preprocessor(batch, True)
    loss, _ = reference.parse_losses(
        reference.loss(data['inputs'], data['data_samples']))
    loss.backward()
    modules = dict(reference.named_modules())
    conv1 = modules['backbone.layer1.0.conv1']
    conv2 = modules['backbone.layer1.0.conv2']
    # torch-pruning's group Taylor: the filters of conv1 and conv2's input
    # slices (its batch norm terms count only GroupNorm and LayerNorm).
    out_part = (conv1.weight * conv1.weight.grad).abs().flatten(1).sum(1)
    in_part = (conv2.weight * conv2.weight.grad).abs().transpose(
        0, 1).flatten(1).sum(1)
    expected = (out_part + in_part).detach() / 2
    assert (expected > 0).float().mean() > 0.9  # gradients reach them
    scores = build_criterion('taylor')(graph, [batch])[group.name]
    torch.testing.assert_close(scores, expected.float(), rtol=1e-4,
                               atol=1e-9)
