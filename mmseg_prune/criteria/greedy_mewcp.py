"""Greedy solver of SIRFP's maximum edge-weight clique problem (EHGP).

Channels are the vertices of a complete graph whose edge weights are their
dissimilarity, so the channels worth keeping are a clique of maximum total
weight. The greedy rule removes, step by step, the remaining channel with the
largest remaining redundancy row sum ``sum_{j remaining} |S_ij|``. Unlike the
official code, which recomputes every row sum at every step (O(C^3) per
layer), the row sums are updated incrementally: removing k subtracts column k
from them, so the whole order costs O(C^2).
"""
from typing import Tuple

import numpy as np
import torch


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
    weights = np.abs(redundancy.detach().cpu().double().numpy())
    if not include_diagonal:
        np.fill_diagonal(weights, 0.0)
    row_sums = weights.sum(1)
    columns = np.ascontiguousarray(weights.T)  # column k as a contiguous row
    size = len(row_sums)
    order = np.empty(size, dtype=np.int64)
    removed_sums = np.empty(size)
    for step in range(size):
        k = int(np.argmax(row_sums))
        order[step] = k
        removed_sums[k] = row_sums[k]
        row_sums -= columns[k]  # k leaves every remaining row sum
        row_sums[k] = -np.inf  # and is never picked again
    return torch.from_numpy(order), torch.from_numpy(removed_sums)
