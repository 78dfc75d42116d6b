"""Split-head attention: the same function as nn.MultiheadAttention, and
heads that prune whole."""
import math

import pytest
import torch
import torch.nn as nn

from mmseg_prune.analysis import count_complexity
from mmseg_prune.pruner.estimators import FlopsEstimator
from mmseg_prune.structure import (SegmentorGraph, SplitHeadAttention,
                                   split_attention)

from tests.helpers import small_segmenter_config

SIZE = (64, 64)


@pytest.mark.parametrize('batch_first', [False, True])
def test_split_attention_computes_what_torch_does(batch_first):
    torch.manual_seed(0)
    dense = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    split = SplitHeadAttention.from_attention(dense).eval()
    query, key = torch.randn(2, 7, 32), torch.randn(2, 5, 32)
    if not batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    mask = torch.rand(7, 5) > 0.6
    mask[:, 0] = False
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1, 4] = True
    for kwargs in ({}, dict(attn_mask=mask, key_padding_mask=padding)):
        torch.testing.assert_close(
            split(query, key, key, **kwargs)[0],
            dense(query, key, key, **kwargs)[0], atol=1e-6, rtol=0)


def test_split_attention_with_other_key_and_value_widths():
    torch.manual_seed(0)
    dense = nn.MultiheadAttention(32, 4, kdim=16, vdim=8).eval()
    split = SplitHeadAttention.from_attention(dense).eval()
    query, key, value = (torch.randn(7, 2, 32), torch.randn(5, 2, 16),
                         torch.randn(5, 2, 8))
    torch.testing.assert_close(split(query, key, value)[0],
                               dense(query, key, value)[0],
                               atol=1e-6, rtol=0)


def test_split_attention_leaves_what_it_cannot_compute():
    model = nn.ModuleDict(dict(
        plain=nn.MultiheadAttention(16, 2),
        nested=nn.Sequential(nn.MultiheadAttention(16, 4)),
        bias_kv=nn.MultiheadAttention(16, 2, add_bias_kv=True)))
    assert split_attention(model) == 2
    assert isinstance(model['plain'], SplitHeadAttention)
    assert isinstance(model['nested'][0], SplitHeadAttention)
    assert model['nested'][0].num_heads == 4
    assert isinstance(model['bias_kv'], nn.MultiheadAttention)


def _segmenter(layers=2):
    """Segmenter's ViT-S with ``layers`` layers at 64x64, split."""
    from mmseg_prune.apis import build_segmentor
    model = build_segmentor(small_segmenter_config(SIZE[0], layers))
    assert split_attention(model) == layers
    return model


def _attention_by_hand(attention, x, heads):
    """The dense attention's output with only ``heads``, from its weights:
    each head's softmax(q kᵀ / √d) v through its columns of the output
    projection."""
    d = attention.head_dim
    out = attention.out_proj.bias.clone()
    for h in heads:
        rows = slice(h * d, (h + 1) * d)
        q = x @ attention.q_proj.weight[rows].T + attention.q_proj.bias[rows]
        k = x @ attention.k_proj.weight[rows].T + attention.k_proj.bias[rows]
        v = x @ attention.v_proj.weight[rows].T + attention.v_proj.bias[rows]
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), -1)
        out = out + (weights @ v) @ attention.out_proj.weight[:, rows].T
    return out


@torch.no_grad()
def test_head_groups_remove_whole_heads():
    graph = SegmentorGraph(_segmenter(), SIZE)
    heads = {g.name: g for g in graph.groups if g.name.endswith('q_proj')}
    assert sorted(heads) == [f'backbone.layers.{i}.attn.attn.q_proj'
                             for i in range(2)]
    group = heads['backbone.layers.0.attn.attn.q_proj']
    assert group.size == 6
    assert {(m.name.rsplit('.', 1)[1], m.dim) for m in group.members} == {
        ('q_proj', 'out'), ('k_proj', 'out'), ('v_proj', 'out'),
        ('out_proj', 'in')}
    for member in group.members:
        assert member.root_idxs == [i // 64 for i in range(384)]

    pruned = graph.prune({group.name: torch.tensor([1, 4])})
    attention = pruned.backbone.layers[0].attn.attn
    assert attention.num_heads == 2
    assert attention.q_proj.out_features == 128
    assert attention.out_proj.in_features == 128
    assert attention.out_proj.out_features == 384  # the residual stays
    assert not attention.batch_first  # mmcv's wrapper transposes
    x = torch.randn(10, 2, 384)  # (L, N, E)
    dense = graph.model.backbone.layers[0].attn.attn
    torch.testing.assert_close(
        attention(x, x, x)[0].transpose(0, 1),
        _attention_by_hand(dense, x.transpose(0, 1), [1, 4]),
        atol=1e-5, rtol=0)
    pruned.eval()(graph.example_inputs())  # the whole model still runs


@torch.no_grad()
def test_flops_estimate_follows_the_heads():
    """An attention's own FLOPs (its products of queries with keys and of
    weights with values) shrink with its heads, as the estimate has it."""
    graph = SegmentorGraph(_segmenter(), SIZE)
    dense = count_complexity(graph.model, SIZE)
    estimator = FlopsEstimator(graph, dense)
    keep = {'backbone.layers.0.attn.attn.q_proj': torch.tensor([0]),
            'backbone.layers.1.attn.attn.q_proj': torch.tensor([2, 3, 5])}
    pruned = count_complexity(graph.prune(keep), SIZE)
    parts = ('q_proj', 'k_proj', 'v_proj', 'out_proj')
    for layer, share in ((0, 1 / 6), (1, 3 / 6)):
        name = f'backbone.layers.{layer}.attn.attn'
        own = [c.by_module[name] - sum(c.by_module[f'{name}.{p}']
                                       for p in parts)
               for c in (dense, pruned)]
        # 2 products of (17 tokens)^2 x 64 per head at 64x64 (16 patches
        # and the class token).
        assert own[0] == 6 * 2 * 17 * 17 * 64
        assert estimator.module_flops[name] == own[0]
        assert own[1] == pytest.approx(own[0] * share)
    # Layers outside the groups scale with the rest in the estimate.
    assert estimator.estimate(keep) == pytest.approx(pruned.flops, rel=0.05)


def test_magnitude_criteria_score_heads():
    from mmseg_prune.pruner import build_criterion
    graph = SegmentorGraph(_segmenter(1), SIZE)
    group = next(g for g in graph.groups if g.name.endswith('q_proj'))
    attention = graph.model.backbone.layers[0].attn.attn
    for name in ('l1', 'fpgm'):
        scores = build_criterion(name)(graph)[group.name]
        assert scores.shape == (6, )
    # L1: each head's mean filter norm over its q, k and v rows.
    rows = torch.cat([p.weight for p in (attention.q_proj, attention.k_proj,
                                         attention.v_proj)], 1)
    expected = rows.abs().sum(1).view(6, 64).mean(1) / 3
    l1 = build_criterion('l1')(graph)[group.name]
    torch.testing.assert_close(l1, expected.float(), atol=1e-5, rtol=1e-5)
