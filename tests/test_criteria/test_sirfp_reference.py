"""SIRFP's scores, removal order and kept sets against a reference written
from the official algorithm's description (the official code's
``GraphEdgePruner``), in plain numpy and Python: it calls none of the
project's functions.

Official algorithm, per layer with BN output x of shape (N, C, H, W):
- x̂_c = x_c / (||x_c||_1 + 1e-5) over the flattened map; S_ij = mean over
  images of <x̂_i, x̂_j>; batches averaged;
- E_c = population std over positions of the Sobel gradient magnitude
  (kernel [[-.5, 0, .5], [-1, 0, 1], [-.5, 0, .5]] and its transpose,
  zero padding 1), averaged over images;
- greedy: recompute, among the remaining channels, every row sum of |S|
  over the remaining channels (diagonal included) and remove the channel
  with the largest; first index on ties (torch.argmax); R_i is the row sum
  when i goes;
- score_i = beta * E_i - R_i, beta = 0.4 in the backbone;
- keep the channels whose score lies above the cut.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn

from mmseg_prune.criteria import SIRFPCriterion
from mmseg_prune.criteria import RedundancyStatistics


def reference_s(batches):
    total = None
    for x in batches:
        n, c = x.shape[:2]
        s = np.zeros((c, c))
        for image in x:
            flat = image.reshape(c, -1).astype(np.float64)
            flat = flat / (np.abs(flat).sum(1, keepdims=True) + 1e-5)
            for i in range(c):
                for j in range(c):
                    s[i, j] += float(np.dot(flat[i], flat[j]))
        s /= n
        total = s if total is None else total + s
    return total / len(batches)


def reference_e(batches):
    k = [[-.5, 0., .5], [-1., 0., 1.], [-.5, 0., .5]]
    total = None
    for x in batches:
        n, c, h, w = x.shape
        e = np.zeros(c)
        for image in x:
            padded = np.pad(image.astype(np.float64), ((0, 0), (1, 1),
                                                       (1, 1)))
            for ch in range(c):
                values = []
                for y in range(h):
                    for xx in range(w):
                        gx = sum(k[a][b] * padded[ch, y + a, xx + b]
                                 for a in range(3) for b in range(3))
                        gy = sum(k[b][a] * padded[ch, y + a, xx + b]
                                 for a in range(3) for b in range(3))
                        values.append((gx * gx + gy * gy) ** 0.5)
                mean = sum(values) / len(values)
                e[ch] += (sum((v - mean) ** 2 for v in values) /
                          len(values)) ** 0.5
        e /= n
        total = e if total is None else total + e
    return total / len(batches)


def reference_greedy(s):
    weights = np.abs(s)
    remaining = list(range(len(s)))
    order, removed_sum = [], {}
    while remaining:
        sums = [sum(weights[i, j] for j in remaining) for i in remaining]
        best = remaining[sums.index(max(sums))]  # first index on ties
        order.append(best)
        removed_sum[best] = max(sums)
        remaining.remove(best)
    return order, np.array([removed_sum[i] for i in range(len(s))])


def _project_scores(batches, name):
    """The project's statistics, taken by its hook on an identity BN."""
    channels = batches[0].shape[1]
    bn = nn.BatchNorm2d(channels, eps=0.0).eval()
    model = nn.Module()
    model.backbone = nn.Sequential(bn)
    model.decode_head = nn.Sequential(nn.BatchNorm2d(channels,
                                                     eps=0.0).eval())
    stats = RedundancyStatistics(model, [name])
    layer = dict(model.named_modules())[name]
    with torch.no_grad():
        for x in batches:
            layer(torch.from_numpy(x))
    stats.remove()
    criterion = SIRFPCriterion()
    criterion.statistics = stats
    return stats, criterion.layer_scores(name).numpy()


@pytest.mark.parametrize('name, beta', [('backbone.0', 0.4),
                                        ('decode_head.0', 0.0)])
def test_scores_order_and_kept_sets_equal_the_reference(name, beta):
    rng = np.random.RandomState(3)
    batches = [rng.randn(2, 6, 5, 4).astype(np.float32) for _ in range(2)]
    stats, scores = _project_scores(batches, name)
    s, e = reference_s(batches), reference_e(batches)
    np.testing.assert_allclose(stats.redundancy[name].numpy(), s,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats.detail[name].numpy(), e, rtol=1e-5)
    order, removed_sums = reference_greedy(s)
    expected = beta * e - removed_sums
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    # Kept sets at every size: the highest scores, the same channels.
    for keep in range(1, 6):
        cut = np.sort(expected)[::-1][keep - 1]
        reference_kept = set(np.flatnonzero(expected >= cut))
        project_kept = set(np.argsort(-scores, kind='stable')[:keep])
        assert project_kept == reference_kept
    # With beta = 0 the score is -R: the greedy removes the lowest first.
    if beta == 0:
        assert list(np.argsort(scores, kind='stable')) == order


def test_removal_order_with_ties():
    """Identical channels tie in every row sum: the first index goes first,
    as torch.argmax picks it."""
    from mmseg_prune.criteria.greedy_mewcp import greedy_removal_order
    base = np.array([[1., 2., 0.], [0., 1., 3.], [2., 2., 2.]])
    x = np.stack([base, base, base * 0.5 + 1, base, base * 0.5 + 1])
    flat = x.reshape(5, -1)
    flat = flat / (np.abs(flat).sum(1, keepdims=True) + 1e-5)
    s = flat @ flat.T
    order, removed_sums = reference_greedy(s)
    project_order, project_sums = greedy_removal_order(torch.from_numpy(s))
    assert list(project_order.numpy()) == order
    np.testing.assert_allclose(project_sums.numpy(), removed_sums)
    assert order[:3] == [0, 1, 3]  # three equal channels, lowest first
