"""Patches to torch-pruning 1.6, installed by the dependency graph.

A faster ``Group.has_pruning_op``.

While a group is being grown, torch-pruning asks for every new dependency
whether the group already holds the same (target, handler, indices) triple,
scanning all items and comparing long index lists each time. On graphs with
many concatenations (HRNet, CGNet) that scan takes over 95% of the time to
list the groups (a minute for CGNet). This version keeps a lookup table of
the items seen so far; the answer is the same, because items are only
appended while the group grows.
"""
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


def install_group_lookup_table() -> None:
    """Replace torch-pruning's linear scan with the table lookup (a
    process-wide patch of ``torch_pruning.dependency.group.Group``;
    installing it twice changes nothing)."""
    Group.has_pruning_op = _has_pruning_op
