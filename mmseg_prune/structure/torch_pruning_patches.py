"""Patches to torch-pruning 1.6, installed by the dependency graph.

1. A faster ``Group.has_pruning_op``.

   While a group is being grown, torch-pruning asks for every new dependency
   whether the group already holds the same (target, handler, indices)
   triple, scanning all items and comparing long index lists each time. On
   graphs with many concatenations (HRNet, CGNet) that scan takes over 95% of
   the time to list the groups (a minute for CGNet). This version keeps a
   lookup table of the items seen so far; the answer is the same, because
   items are only appended while the group grows.

2. Channel concatenations downstream of a ViT keep their index mapping.

   torch-pruning turns off the index mapping of every concatenation and
   split that has a 3-D parameter (a ViT's position embedding or class
   token) anywhere upstream, for the class-token concatenation along the
   token dim. Every concatenation of a head on a ViT then maps its inputs'
   channels to the same indices, so a UPerNet head's PPM and FPN channels
   cannot be pruned. The patch turns the mapping back on where the tensors
   are feature maps (N, C, H, W) or vectors (N, C) joined along dim 1: the
   channel dim, which the mapping is written for.
"""
import torch_pruning as tp
from torch_pruning.dependency.graph import DependencyGraph
from torch_pruning.dependency.group import Group


def _has_pruning_op(self, dep, idxs):
    table = self.__dict__.get('_op_table')
    if table is None or self.__dict__.get('_op_table_len', 0) > len(
            self._group):
        table, self._op_table_len = {}, 0
        self._op_table = table
    for item_dep, item_idxs in self._group[self._op_table_len:]:
        table.setdefault((item_dep.target, item_dep.handler),
                         set()).add(tuple(item_idxs))
    self._op_table_len = len(self._group)
    return tuple(idxs) in table.get((dep.target, dep.handler), ())


def joins_channels(node) -> bool:
    """A concatenation or split along dim 1 of (N, C, H, W) or (N, C)
    tensors: along the channels."""
    grad_fn = node.grad_fn
    try:
        dim = grad_fn._saved_dim
        rank = len(grad_fn._input_metadata[0].shape)
    except (AttributeError, IndexError, RuntimeError):
        return False
    return rank in (2, 4) and dim in (1, 1 - rank)


def _trace(self, *args, **kwargs):
    module2node = _original_trace(self, *args, **kwargs)
    for node in module2node.values():
        if node.type in (tp.ops.OPTYPE.CONCAT, tp.ops.OPTYPE.SPLIT) and \
                joins_channels(node):
            node.enable_index_mapping = True
    return module2node


_original_trace = DependencyGraph._trace


def install_patches() -> None:
    """Install both patches (process-wide; installing twice changes
    nothing)."""
    Group.has_pruning_op = _has_pruning_op
    DependencyGraph._trace = _trace
