"""Bias compensation: what removed channels fed the next layer moves into
its bias (the official SIRFP code's ``resize_subnet_bias``).

A channel removed after a norm layer no longer feeds its consumers. Its
output is taken to be the norm's shift ``beta`` (its mean over the data
when the norm's statistics hold), after the activation on the way: relu(beta)
behind a ReLU. Each consumer conv or linear layer then misses
``a_c * sum(W[:, c])`` per output, which is added to the consumer's bias or,
when a norm layer follows it without a bias in between, subtracted from
that norm's running mean. Borders under zero padding differ slightly, as in
the official code.

Only channels with one norm layer as their producer are compensated, on
paths through activations, concatenations, resizing and pooling (which keep a
constant constant); channels mixed by a residual add or reaching a layer in
another way are left as they are.
"""
from contextlib import contextmanager
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch_pruning as tp

from .graph import ChannelGroup, SegmentorGraph
from .layer_rules import is_batch_norm, shifts_bias_on_constant_input
#: autograd functions that keep a constant map constant.
_PASS_THROUGH = ('Cat', 'Upsample', 'Pool', 'Interpolate', 'Clone', 'Mean')


def _op_name(node) -> str:
    return str(getattr(node.module, '_grad_fn', ''))


def _is_relu(node) -> bool:
    return isinstance(node.module, nn.ReLU) or \
        _op_name(node).startswith('Relu')


def _keeps_constants(node) -> bool:
    """Concatenations, resizing, pooling, identities and dropout (eval)."""
    return node.type == tp.ops.OPTYPE.CONCAT or isinstance(
        node.module, (nn.Identity, nn.Dropout, nn.Dropout2d)) or any(
            key in _op_name(node) for key in _PASS_THROUGH)


def _consumers(graph: SegmentorGraph, norm: nn.Module):
    """The conv/linear layers fed by ``norm``, and whether a ReLU lies on
    the way; None when something else (an add, say) takes its output."""
    dg = graph.dependency_graph
    consumers, relu = [], False
    stack, seen = list(dg.module2node[norm].outputs), set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        module = node.module
        if shifts_bias_on_constant_input(module):
            consumers.append(module)
            continue
        if _is_relu(node):
            relu = True
        elif not _keeps_constants(node):
            return None
        stack += node.outputs
    return consumers, relu


def _next_norm(graph: SegmentorGraph, layer: nn.Module) -> Optional[nn.Module]:
    """The batch norm directly after ``layer``, if one is."""
    outputs = graph.dependency_graph.module2node[layer].outputs
    if len(outputs) == 1 and is_batch_norm(outputs[0].module):
        return outputs[0].module
    return None


def _group_shifts(graph: SegmentorGraph, group: ChannelGroup,
                  removed: set, shifts: Dict[nn.Module, torch.Tensor]):
    producers = [m for m in group.members if m.dim == 'out' and
                 is_batch_norm(graph.modules[m.name])]
    if len(producers) != 1:
        return
    norm = graph.modules[producers[0].name]
    if norm.bias is None:
        return
    found = _consumers(graph, norm)
    if not found:
        return
    consumers, relu = found
    beta = norm.bias.detach().double()
    if relu:
        beta = beta.clamp(min=0)
    channel = dict(zip(producers[0].root_idxs, producers[0].idxs))
    for member in group.members:
        layer = graph.modules[member.name]
        if member.dim != 'in' or layer not in consumers:
            continue
        # Each output's weights on each input channel, summed over the
        # kernel: (out, in).
        weight = layer.weight.detach().double().flatten(2).sum(2) \
            if layer.weight.dim() > 2 else layer.weight.detach().double()
        shift = torch.zeros(weight.shape[0], dtype=torch.float64)
        for idx, root in zip(member.idxs, member.root_idxs):
            if root in removed:
                shift += beta[channel[root]] * weight[:, idx]
        shifts[layer] = shifts.get(layer, 0) + shift


@contextmanager
def compensated_biases(graph: SegmentorGraph,
                       keep: Dict[str, torch.Tensor]):
    """Move the removed channels' contributions into the next biases of
    ``graph.model`` for the duration of the block (prune a copy inside it).

    Args:
        graph (SegmentorGraph): The dense graph.
        keep (dict[str, Tensor]): Group name -> kept channel indices.
    """
    shifts: Dict[nn.Module, torch.Tensor] = {}
    for group in graph.groups:
        if group.name in keep:
            removed = set(range(group.size)) - {int(i) for i in
                                                keep[group.name]}
            if removed:
                _group_shifts(graph, group, removed, shifts)
    saved = []
    with torch.no_grad():
        for layer, shift in shifts.items():
            if layer.bias is not None:
                target, sign = layer.bias, 1
            else:
                target, sign = getattr(_next_norm(graph, layer),
                                       'running_mean', None), -1
            if target is None:
                continue
            saved.append((target, target.clone()))
            target.add_(sign * shift.to(target.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for target, value in saved:
                target.copy_(value)
