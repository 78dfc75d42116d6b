"""Greedy solver of SIRFP's maximum edge-weight clique problem (EHGP).

Channels are the vertices of a complete graph whose edge weights are their
dissimilarity, so the channels worth keeping are a clique of maximum total
weight. The greedy rule removes, step by step, the remaining channel with the
largest remaining redundancy row sum ``sum_{j remaining} |S_ij|``. Unlike the
official code, which recomputes every row sum at every step (O(C^3) per
layer), the row sums are updated incrementally: removing k subtracts column k
from them, so the whole order costs O(C^2).
"""
from typing import List, Sequence, Tuple

import torch


def greedy_removal_orders(
        redundancies: Sequence[torch.Tensor],
        include_diagonal: bool = True
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """:func:`greedy_removal_order` of many layers at once.

    Layers of the same width are stacked and solved together, so the number
    of Python steps is the sum of the distinct widths (about 4k for a
    ResNet-101) rather than of all widths (56k).

    Args:
        redundancies (Sequence[Tensor]): (C, C) matrices S, any widths.
        include_diagonal (bool): See :func:`greedy_removal_order`.

    Returns:
        list[tuple[Tensor, Tensor]]: Per matrix, the removal order and the
        row sum of every channel when it was removed.
    """
    results = [None] * len(redundancies)
    by_width = {}
    for i, matrix in enumerate(redundancies):
        by_width.setdefault(len(matrix), []).append(i)
    for width, members in by_width.items():
        weights = torch.stack([
            redundancies[i].detach().cpu().abs().double() for i in members
        ])
        if not include_diagonal:
            weights.diagonal(dim1=1, dim2=2).zero_()
        columns = weights.transpose(1, 2).contiguous()  # column k as a row
        row_sums = weights.sum(2)
        del weights
        rows = torch.arange(len(members))
        order = torch.empty(len(members), width, dtype=torch.long)
        removed_sums = torch.empty(len(members), width, dtype=torch.float64)
        for step in range(width):
            k = row_sums.argmax(1)
            order[:, step] = k
            removed_sums[rows, k] = row_sums[rows, k]
            row_sums -= columns[rows, k]  # k leaves every remaining row sum
            row_sums[rows, k] = -float('inf')  # and is never picked again
        for j, i in enumerate(members):
            results[i] = (order[j], removed_sums[j])
    return results


def greedy_removal_order(redundancy: torch.Tensor,
                         include_diagonal: bool = True
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Order in which the greedy rule removes channels.

    Args:
        redundancy (Tensor): (C, C) redundancy matrix S; |S| is used.
        include_diagonal (bool): Count S_ii in the row sums, as the official
            code does (the paper sums over j != i). Default: True.

    Returns:
        tuple[Tensor, Tensor]: The channel indices in removal order, and for
        every channel its row sum R_i at the moment it was removed.
    """
    return greedy_removal_orders([redundancy], include_diagonal)[0]
