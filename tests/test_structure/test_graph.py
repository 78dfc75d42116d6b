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


def _vit_upernet():
    """A four-layer ViT with a UPerNet head (the zoo's vit family, small)."""
    from mmseg_prune.apis import build_segmentor, load_config
    cfg = load_config(
        'mmseg::vit/vit_deit-s16_upernet_8xb2-160k_ade20k-512x512.py')
    model = cfg.model
    model.pretrained = None
    model.backbone.update(img_size=(64, 64), embed_dims=32, num_layers=4,
                          num_heads=2, out_indices=(0, 1, 2, 3),
                          init_cfg=None)
    model.decode_head.update(in_channels=[32] * 4, channels=16)
    model.auxiliary_head.update(in_channels=32, channels=8)
    return build_segmentor(cfg)


def test_channel_concatenations_after_a_vit_are_mapped():
    """torch-pruning drops the index mapping of every concatenation below a
    ViT's position embedding; UPerNet's FPN concatenation must keep it, or
    its PPM and FPN channels cannot be pruned."""
    graph = SegmentorGraph(_vit_upernet(), SIZE)
    assert not graph.unprunable
    by_name = {g.name: g for g in graph.groups}
    # fpn_bottleneck reads cat([fpn_convs 0..2, PPM bottleneck]), 16 each.
    ppm = by_name['decode_head.bottleneck.conv']
    reads = [m for m in ppm.members
             if (m.name, m.dim) == ('decode_head.fpn_bottleneck.conv', 'in')]
    assert len(reads) == 1 and reads[0].idxs == list(range(48, 64))
    assert not any(m.name.startswith('decode_head.fpn_convs') and
                   m.dim == 'out' for m in ppm.members)
    # The PPM's branches meet the ViT's tokens only in a concatenation.
    assert 'decode_head.psp_modules.0.1.conv' in by_name
    assert 'decode_head.psp_modules.0.1.conv' not in graph.protected


def test_point_rend_prunes_through_its_point_head():
    """PointRend's point head classifies sampled points; mmseg's tensor
    mode cannot run it, its inference (subdivision) does."""
    from mmseg_prune.apis import build_segmentor, load_config
    from mmseg_prune.pruner import prune_segmentor
    from mmseg_prune.structure import inference_forward
    cfg = load_config('mmseg::point_rend/pointrend_r50_4xb4-160k_ade20k-'
                      '512x512.py')
    cfg.model.pretrained = None
    cfg.model.backbone.depth = 18
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    cfg.model.test_cfg.subdivision_num_points = 64
    model = build_segmentor(cfg).eval()
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        out = inference_forward(model, x)
        # mmseg's own inference, through the data samples.
        expected = model.encode_decode(x, [dict(img_shape=SIZE,
                                                pad_shape=SIZE,
                                                ori_shape=SIZE)])
    assert out.shape == (1, 150, *SIZE)
    torch.testing.assert_close(out, expected)
    graph = SegmentorGraph(model, SIZE)
    assert 'decode_head.1.fcs.0.conv' in {g.name for g in graph.groups}
    assert 'decode_head.1.fc_seg' in graph.protected
    result = prune_segmentor(model, 'l1', 0.5, SIZE)
    assert abs(result.achieved_reduction - 0.5) <= 0.005
    fc = result.model.decode_head[1].fcs[0].conv
    assert fc.out_channels < 256
    with torch.no_grad():
        assert inference_forward(result.model.eval(), x).shape == out.shape
