import pytest
import torch
import torch_pruning as tp
from mmseg.registry import MODELS

from mmseg_prune.structure import SegmentorGraph, forward_all_heads
from tests.helpers import producers
from mmseg_prune.utils import PruneError

SIZE = (64, 64)


def test_classifiers_are_protected(small_model):
    graph = SegmentorGraph(small_model, SIZE)
    assert 'decode_head.conv_seg' in graph.protected
    assert 'auxiliary_head.conv_seg' in graph.protected
    pruned_outputs = {n for g in graph.groups for n in producers(g)}
    assert not pruned_outputs & set(graph.protected)
    # Their input channels are still prunable.
    inputs = {m.name for g in graph.groups for m in g.members if m.dim == 'in'}
    assert {'decode_head.conv_seg', 'auxiliary_head.conv_seg'} <= inputs


def test_auxiliary_head_is_traced(small_model):
    """mmseg's tensor-mode forward misses the auxiliary head; ours does not."""
    graph = SegmentorGraph(small_model, SIZE)
    aux_conv = graph.modules['auxiliary_head.convs.0.conv']
    tensor_mode = tp.DependencyGraph().build_dependency(
        graph.model, torch.randn(1, 3, *SIZE),
        forward_fn=lambda m, x: m._forward(x))
    assert aux_conv not in tensor_mode.module2node
    assert aux_conv in graph.dependency_graph.module2node
    # The aux head reads layer3's residual stream: pruning that stream must
    # shrink the aux head's first conv too.
    stream = [g for g in graph.groups
              if 'backbone.layer3.0.downsample.0' in producers(g)]
    assert len(stream) == 1
    assert ('auxiliary_head.convs.0.conv', 'in') in {
        (m.name, m.dim) for m in stream[0].members}


def test_residual_members_are_coupled(small_model):
    graph = SegmentorGraph(small_model, SIZE)
    stream = [g for g in graph.groups
              if 'backbone.layer2.0.downsample.0' in producers(g)][0]
    assert {'backbone.layer2.0.conv2', 'backbone.layer2.1.conv2'} <= set(
        producers(stream))


def test_ignore_patterns(small_model):
    graph = SegmentorGraph(small_model, SIZE, ignore=['decode_head.convs.*'])
    assert 'decode_head.convs.0.conv' in graph.protected
    assert not any(n.startswith('decode_head.convs.')
                   for g in graph.groups for n in producers(g))
    with pytest.raises(PruneError, match='match no module'):
        SegmentorGraph(small_model, SIZE, ignore=['no_such_module*'])


def test_refuses_non_segmentor():
    backbone = MODELS.build(dict(type='ResNetV1c', depth=18))
    with pytest.raises(PruneError, match='not an mmseg encoder-decoder'):
        SegmentorGraph(backbone, SIZE)


def test_prune_keeps_requested_channels(small_model):
    graph = SegmentorGraph(small_model, SIZE)
    group = [g for g in graph.groups if g.name == 'backbone.stem.0'][0]
    keep = torch.tensor([0, 3, 5])
    before = graph.modules['backbone.stem.0'].weight[keep].clone()
    pruned = dict(graph.prune({group.name: keep}).named_modules())
    conv = pruned['backbone.stem.0']
    assert conv.out_channels == 3
    torch.testing.assert_close(conv.weight, before)
    assert pruned['backbone.stem.1'].num_features == 3
    assert pruned['backbone.stem.3'].in_channels == 3
    outputs = forward_all_heads(pruned[''], torch.randn(1, 3, *SIZE))
    assert outputs[0].shape[1] == 19
    # The graph's own model stays dense.
    assert graph.modules['backbone.stem.0'].out_channels == 32


def test_prune_matches_torch_pruning(small_model):
    """One call per layer with the union of dense indices gives the same
    model as torch-pruning's group-by-group pruning."""
    graph = SegmentorGraph(small_model, SIZE)
    gen = torch.Generator().manual_seed(0)
    keep = {g.name: torch.randperm(g.size, generator=gen)[:g.size // 3 + 1]
            for g in graph.groups}
    ours = graph.prune(keep).state_dict()
    dg = graph.dependency_graph
    for group in graph.groups:
        root = graph.modules[group.name]
        kept = set(keep[group.name].tolist())
        dg.get_pruning_group(
            root, dg.get_pruner_of_module(root).prune_out_channels,
            [i for i in range(group.size) if i not in kept]).prune()
    theirs = graph.model.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key])


def test_groups_breaking_the_forward_are_kept_whole(small_model):
    """A channel count the graph cannot see (like EMANet's bases, used
    through einsum) makes its group unprunable, and only that group."""
    head = small_model.decode_head
    fixed = torch.ones(1, head.convs[-1].conv.out_channels, 1, 1)
    head.convs.register_forward_hook(lambda mod, args, out: out * fixed)
    graph = SegmentorGraph(small_model, SIZE)
    assert len(graph.unprunable) == 1
    assert all(g.name not in graph.unprunable for g in graph.groups)
    keep = {g.name: torch.arange(0, g.size, 2) for g in graph.groups}
    pruned = graph.prune(keep).eval()
    out = forward_all_heads(pruned, torch.randn(1, 3, *SIZE))
    assert [tuple(t.shape) for t in out] == graph.output_shapes
    assert pruned.decode_head.convs[-1].conv.out_channels == \
        fixed.shape[1]
