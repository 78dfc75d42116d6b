"""Attention whose heads can be pruned.

``nn.MultiheadAttention`` keeps its query, key and value projections in one
``in_proj_weight`` and asserts that its heads fill the embedding, so none
of its heads can go without cutting the residual stream it reads and
writes. :class:`SplitHeadAttention` computes the same function with four
plain linear layers whose head channels can be removed, a whole head at a
time, while its input and output keep the embedding width.
"""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class SplitHeadAttention(nn.Module):
    """Multi-head attention over separate q, k, v and output projections.

    A drop-in for ``nn.MultiheadAttention`` (same call, same outputs) that
    supports what mmseg's transformers use: no ``add_bias_kv``, no
    ``add_zero_attn``. The number of heads follows the projections' width
    (``q_proj.out_features // head_dim``), so pruning whole heads from the
    linear layers is all a pruned model needs.

    Args:
        embed_dim (int): Width of the queries and of the output.
        head_dim (int): Width of one head (unchanged by pruning: it sets the
            softmax's scale).
        heads (int): Number of heads.
        kdim (int): Width of the keys. vdim (int): Width of the values.
        bias (bool): Whether the projections have biases.
        dropout (float): Dropout on the attention weights.
        batch_first (bool): Tensors are (N, L, E) instead of (L, N, E).
    """

    def __init__(self, embed_dim: int, head_dim: int, heads: int, kdim: int,
                 vdim: int, bias: bool = True, dropout: float = 0.,
                 batch_first: bool = False):
        super().__init__()
        self.head_dim = head_dim
        self.dropout = dropout
        self.batch_first = batch_first
        width = head_dim * heads
        self.q_proj = nn.Linear(embed_dim, width, bias=bias)
        self.k_proj = nn.Linear(kdim, width, bias=bias)
        self.v_proj = nn.Linear(vdim, width, bias=bias)
        self.out_proj = nn.Linear(width, embed_dim, bias=bias)

    @property
    def num_heads(self) -> int:
        return self.q_proj.out_features // self.head_dim

    @classmethod
    def from_attention(cls, attention: nn.MultiheadAttention
                       ) -> 'SplitHeadAttention':
        """The same attention, with ``attention``'s weights."""
        embed = attention.embed_dim
        split = cls(embed, attention.head_dim, attention.num_heads,
                    attention.kdim, attention.vdim,
                    bias=attention.in_proj_bias is not None,
                    dropout=attention.dropout,
                    batch_first=attention.batch_first)
        if attention._qkv_same_embed_dim:
            weights = attention.in_proj_weight.detach().chunk(3)
        else:
            weights = (attention.q_proj_weight, attention.k_proj_weight,
                       attention.v_proj_weight)
        biases = attention.in_proj_bias.detach().chunk(3) \
            if attention.in_proj_bias is not None else (None, ) * 3
        with torch.no_grad():
            for proj, weight, bias in zip(
                    (split.q_proj, split.k_proj, split.v_proj), weights,
                    biases):
                proj.weight.copy_(weight)
                if bias is not None:
                    proj.bias.copy_(bias)
            split.out_proj.weight.copy_(attention.out_proj.weight)
            if split.out_proj.bias is not None:
                split.out_proj.bias.copy_(attention.out_proj.bias)
        return split.to(attention.out_proj.weight.device,
                        attention.out_proj.weight.dtype).train(
                            attention.training)

    def forward(self, query: torch.Tensor, key: torch.Tensor,
                value: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None,
                need_weights: bool = True,
                attn_mask: Optional[torch.Tensor] = None, **kwargs):
        """As ``nn.MultiheadAttention.forward``; the attention weights are
        not returned (None in their place)."""
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1)
                                 for t in (query, key, value))
        batch, length = query.shape[:2]
        q = self.q_proj(query).unflatten(-1, (-1, self.head_dim))
        k = self.k_proj(key).unflatten(-1, (-1, self.head_dim))
        v = self.v_proj(value).unflatten(-1, (-1, self.head_dim))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # N, heads, L, d
        logits = (q * (1 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)
        if attn_mask is not None:
            if attn_mask.dim() == 3:  # (N * heads, L, S)
                attn_mask = attn_mask.view(batch, -1, *attn_mask.shape[1:])
            logits = logits.masked_fill(attn_mask, float('-inf')) \
                if attn_mask.dtype == torch.bool else logits + attn_mask
        if key_padding_mask is not None:
            padding = key_padding_mask.view(batch, 1, 1, -1)
            logits = logits.masked_fill(padding, float('-inf')) \
                if padding.dtype == torch.bool else logits + padding
        weights = F.dropout(logits.softmax(-1), self.dropout, self.training)
        out = (weights @ v).transpose(1, 2).reshape(batch, length, -1)
        out = self.out_proj(out)
        return (out if self.batch_first else out.transpose(0, 1)), None


def can_split(attention: nn.MultiheadAttention) -> bool:
    """Whether :class:`SplitHeadAttention` computes what ``attention``
    does (no learned or zero key/value rows appended)."""
    return attention.bias_k is None and not attention.add_zero_attn


def has_split_attention(model: nn.Module) -> bool:
    """Whether ``model`` holds a :class:`SplitHeadAttention`."""
    return any(isinstance(m, SplitHeadAttention) for m in model.modules())


def split_attention(model: nn.Module) -> int:
    """Replace, in place, every ``nn.MultiheadAttention`` of ``model`` that
    :func:`can_split` by a :class:`SplitHeadAttention` with its weights.

    Returns:
        int: How many were replaced.
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention) and can_split(child):
                setattr(parent, name, SplitHeadAttention.from_attention(child))
                replaced += 1
    return replaced
