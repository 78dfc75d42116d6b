import copy

import pytest
import torch

from mmseg_prune.apis import build_segmentor, load_config
from mmseg_prune.structure import (SegmentorGraph, apply_architecture,
                                   extract_architecture)
from mmseg_prune.utils import PruneError

from tests.helpers import SMALL


def _pruned_small():
    dense = build_segmentor(load_config(SMALL))
    graph = SegmentorGraph(copy.deepcopy(dense), (64, 64))
    keep = {g.name: torch.arange(0, g.size, 2) for g in graph.groups}
    return dense, graph.prune(keep)


def test_architecture_round_trip():
    dense, pruned = _pruned_small()
    architecture = extract_architecture(dense, pruned)
    conv = architecture['backbone.stem.0']
    assert conv['attrs']['out_channels'] == 16
    assert conv['shapes']['weight'] == [16, 3, 3, 3]
    assert architecture['backbone.stem.1']['attrs']['num_features'] == 16

    rebuilt = build_segmentor(load_config(SMALL))
    apply_architecture(rebuilt, architecture)
    rebuilt.load_state_dict(pruned.state_dict())  # strict: same shapes
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()._forward(x),
                                   pruned.eval()._forward(x))


def test_architecture_of_another_model_is_refused():
    dense, pruned = _pruned_small()
    architecture = extract_architecture(dense, pruned)
    architecture['backbone.no_such_layer'] = dict(attrs={}, shapes={})
    with pytest.raises(PruneError, match='another model'):
        apply_architecture(build_segmentor(load_config(SMALL)), architecture)
