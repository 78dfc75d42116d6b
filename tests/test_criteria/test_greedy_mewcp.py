import itertools

import pytest
import torch

from mmseg_prune.criteria.greedy_mewcp import greedy_removal_order
from mmseg_prune.criteria import batch_redundancy


def brute_force_order(redundancy, include_diagonal):
    """The greedy rule as stated: recompute every row sum at every step."""
    weights = redundancy.abs().double()
    remaining = list(range(len(weights)))
    order, sums = [], {}
    while remaining:
        row_sums = {
            i: sum(weights[i, j].item() for j in remaining
                   if include_diagonal or j != i)
            for i in remaining
        }
        k = max(remaining, key=lambda i: (row_sums[i], -i))
        order.append(k)
        sums[k] = row_sums[k]
        remaining.remove(k)
    return order, sums


@pytest.mark.parametrize('seed, include_diagonal',
                         itertools.product(range(5), [True, False]))
def test_matches_brute_force(seed, include_diagonal):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 12, 6, 6, generator=gen)
    redundancy = batch_redundancy(features)
    order, sums = greedy_removal_order(redundancy, include_diagonal)
    expected_order, expected_sums = brute_force_order(
        redundancy, include_diagonal)
    assert order.tolist() == expected_order
    for k, value in expected_sums.items():
        assert sums[k].item() == pytest.approx(value, rel=1e-9)


def test_duplicated_channels_go_first():
    gen = torch.Generator().manual_seed(0)
    distinct = torch.rand(2, 6, 8, 8, generator=gen)
    # Channels 6 and 7 duplicate channels 0 and 3 exactly.
    features = torch.cat([distinct, distinct[:, [0, 3]]], dim=1)
    order, _ = greedy_removal_order(batch_redundancy(features))
    first_two = set(order[:2].tolist())
    assert len(first_two & {0, 6}) == 1 and len(first_two & {3, 7}) == 1
