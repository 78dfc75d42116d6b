"""Every listed model-zoo family prunes by 50% and stays an mmseg model."""
import pytest
import torch
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead

from mmseg_prune.apis import (build_report, build_segmentor, load_config,
                              prune_segmentor, save_pruned)
from mmseg_prune.structure import auxiliary_heads, forward_all_heads

from tests.helpers import SMALL, fake_batch

#: 64x64 tests the same structure as 128x128; two families keep 128.
SIZE = 64
SIZES = {'deeplabv3_r50': 128, 'segformer_mit_b0': 128}
ZOO = {
    'deeplabv3_r50': 'deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'pspnet_r50': 'pspnet/pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'fcn_r50': 'fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'deeplabv3plus_r50':
    'deeplabv3plus/deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'upernet_r50': 'upernet/upernet_r50_4xb4-20k_voc12aug-512x512.py',
    'deeplabv3_mobilenetv2':
    'mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb4-160k_ade20k-512x512.py',
    'fcn_hrnetv2_w18': 'hrnet/fcn_hr18_4xb4-20k_voc12aug-512x512.py',
    'bisenetv1_r18':
    'bisenetv1/bisenetv1_r18-d32_4xb4-160k_cityscapes-1024x1024.py',
    'fast_scnn': 'fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py',
    'stdc1': 'stdc/stdc1_4xb12-80k_cityscapes-512x1024.py',
    'segformer_mit_b0':
    'segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
    'segmenter_vit_s':
    'segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512.py',
}


@pytest.mark.parametrize('family', sorted(ZOO))
def test_prune_model_zoo_family(family, tmp_path):
    size = SIZES.get(family, SIZE)
    cfg = load_config('mmseg::' + ZOO[family])
    dense = build_segmentor(cfg)
    inputs, samples = fake_batch(dense, size=size)
    with torch.no_grad():
        dense_outputs = forward_all_heads(dense.eval(), inputs)

    result = prune_segmentor(dense, 'l1', 0.5, (size, size))
    pruned = result.model

    # Physically smaller, within the budget tolerance.
    assert abs(result.achieved_reduction - 0.5) <= 0.005
    assert result.pruned.params < result.dense.params
    assert any(kept < total for kept, total in result.layers.values())

    # Every head still produces outputs of the dense shapes.
    with torch.no_grad():
        outputs = forward_all_heads(pruned.eval(), inputs)
    assert len(outputs) == len(dense_outputs)
    for before, after in zip(dense_outputs, outputs):
        before = before if isinstance(before, (list, tuple)) else [before]
        after = after if isinstance(after, (list, tuple)) else [after]
        assert [t.shape for t in before] == [t.shape for t in after]

    # Loss mode trains every head (auxiliary losses included) ...
    pruned.train()
    losses = pruned.loss(inputs, samples)
    total, _ = pruned.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    num_aux = len(auxiliary_heads(pruned))
    assert sum(k.startswith('aux') for k in losses if 'loss' in k) >= num_aux
    # ... and predict mode gives full-size predictions.
    pruned.eval()
    with torch.no_grad():
        preds = pruned.predict(inputs, samples)
    assert preds[0].pred_sem_seg.data.shape == (1, size, size)

    # Saved and rebuilt from its config, it computes the same function.
    paths = save_pruned(result, cfg, str(tmp_path),
                        build_report(result, 'l1', 0.5))
    reloaded = build_segmentor(load_config(paths['config']),
                               paths['checkpoint'])
    with torch.no_grad():
        expected = pruned._forward(inputs)
        actual = reloaded._forward(inputs)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


class FixedSplitHead(BaseDecodeHead):
    """Splits its features with sizes from its config, as some mmseg heads
    do: channel counts the dependency graph cannot see."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pre = ConvModule(self.in_channels, self.channels, 3, padding=1,
                              norm_cfg=self.norm_cfg)

    def forward(self, inputs):
        x = self.pre(self._transform_inputs(inputs))
        half = self.channels // 2
        a, b = x.split([half, self.channels - half], dim=1)
        return self.cls_seg(torch.cat([b, a], dim=1))


def _fixed_split_config():
    from mmseg.registry import MODELS
    MODELS.register_module(module=FixedSplitHead, force=True)
    cfg = load_config(SMALL)
    cfg.model.decode_head = dict(
        type='FixedSplitHead', in_channels=512, in_index=3, channels=64,
        num_classes=19, norm_cfg=dict(type='BN'),
        loss_decode=dict(type='CrossEntropyLoss'))
    return cfg


def test_hidden_channel_counts_are_kept_whole():
    result = prune_segmentor(build_segmentor(_fixed_split_config()), 'l1',
                             0.5, (64, 64))
    assert result.layers['decode_head.pre.conv'] == [64, 64]
    assert abs(result.achieved_reduction - 0.5) <= 0.005


def test_unsupported_head_is_refused_naming_the_module(monkeypatch):
    """Should a layer slip past the graph's check, the pruned model's own
    check refuses it, naming the module and the fix."""
    from mmseg_prune.structure import SegmentorGraph
    from mmseg_prune.utils import PruneError
    monkeypatch.setattr(SegmentorGraph, '_drop_breaking_groups',
                        lambda self: [])
    cfg = _fixed_split_config()
    with pytest.raises(PruneError, match=r'fails in module "decode_head\.'
                       r'pre.*not supported yet.*pruning\.ignore'):
        prune_segmentor(build_segmentor(cfg), 'l1', 0.5, (64, 64))
    # Following the advice in the message works.
    result = prune_segmentor(build_segmentor(cfg), 'l1', 0.5, (64, 64),
                             ignore=['decode_head.pre*'])
    assert abs(result.achieved_reduction - 0.5) <= 0.005
