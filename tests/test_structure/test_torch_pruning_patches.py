"""The table-lookup has_pruning_op finds exactly torch-pruning's groups."""
import pytest
from torch_pruning.dependency.group import Group

from mmseg_prune.apis import build_segmentor, load_config
from mmseg_prune.structure import SegmentorGraph
from mmseg_prune.structure.torch_pruning_patches import \
    install_patches


def _original_has_pruning_op(self, dep, idxs):  # torch-pruning 1.6.1
    for _dep, _idxs in self._group:
        if (_dep.target == dep.target and _dep.handler == dep.handler
                and _idxs == idxs):
            return True
    return False


def _groups(model):
    graph = SegmentorGraph(model, (64, 64))
    return [(g.name, g.size, [tuple(map(tuple, (m.idxs, m.root_idxs))) + (
        m.name, m.dim) for m in g.members]) for g in graph.groups]


@pytest.mark.parametrize('config', [
    'mmseg::deeplabv3plus/deeplabv3plus_r18-d8_4xb2-80k_cityscapes-'
    '512x1024.py',
    'mmseg::fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py',
])
def test_same_groups_as_torch_pruning(config):
    cfg = load_config(config)
    fast = _groups(build_segmentor(cfg))
    Group.has_pruning_op = _original_has_pruning_op
    try:
        slow = _groups(build_segmentor(cfg))
    finally:
        install_patches()
    assert fast == slow
