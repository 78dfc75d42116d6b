import os.path as osp

import pytest
import torch
from mmseg.apis import inference_model, init_model
from mmseg.models.segmentors import EncoderDecoder

from mmseg_prune.apis import (build_report, build_segmentor, load_config,
                              prune_segmentor, save_pruned)
from mmseg_prune.utils import PruneError

from tests.helpers import SMALL


def test_builds_a_plain_segmentor(small_pruned):
    out, result = small_pruned
    model = build_segmentor(load_config(osp.join(out, 'pruned_config.py')))
    assert type(model) is EncoderDecoder
    for name, (kept, _) in result.layers.items():
        module = model.get_submodule(name)
        assert getattr(module, 'out_channels', None) in (kept, None)
    # Built from its config alone, it already holds the pruned weights.
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model._forward(x),
                                   result.model.eval()._forward(x))


def test_mmseg_apis_accept_it(small_pruned, demo_root):
    out, result = small_pruned
    model = init_model(osp.join(out, 'pruned_config.py'),
                       osp.join(out, 'pruned.pth'), device='cpu')
    image = osp.join(demo_root, 'JPEGImages', 'demo_00000.jpg')
    prediction = inference_model(model, image)
    import mmcv
    height, width = mmcv.imread(image).shape[:2]
    assert prediction.pred_sem_seg.data.shape == (1, height, width)


def test_refuses_weights_of_another_architecture(small_pruned):
    out, _ = small_pruned
    model = build_segmentor(load_config(osp.join(out, 'pruned_config.py')))
    dense_state = build_segmentor(load_config(SMALL)).state_dict()
    with pytest.raises(PruneError, match='does not fit this pruned model'):
        model.load_state_dict(dense_state, strict=False)


def test_missing_weights_file_is_an_error(small_pruned):
    """A config moved without its weights does not train from random
    weights in silence; None says "no pruned weights" explicitly."""
    out, _ = small_pruned
    cfg = load_config(osp.join(out, 'pruned_config.py'))
    cfg.model.pruned_weights = osp.join(out, 'moved.pth')
    with pytest.raises(PruneError, match='not found.*pruned_weights=None'):
        build_segmentor(cfg)
    cfg.model.pruned_weights = None
    build_segmentor(cfg)


def test_work_dir_moved_whole_still_loads(small_pruned, tmp_path):
    """pruned_config.py finds pruned.pth beside itself."""
    import shutil
    out, _ = small_pruned
    moved = str(tmp_path / 'moved')
    shutil.copytree(out, moved)
    cfg = load_config(osp.join(moved, 'pruned_config.py'))
    assert cfg.model.pruned_weights == osp.join(moved, 'pruned.pth')
    model = build_segmentor(cfg)
    reference = torch.load(osp.join(out, 'pruned.pth'))['state_dict']
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_pruned_config_keeps_the_dense_fields(small_pruned):
    """Tools that read cfg.model.backbone, decode_head or test_cfg (mmseg's,
    mmdeploy's) find the dense model's values there."""
    out, _ = small_pruned
    dense = load_config(SMALL).model
    pruned = load_config(osp.join(out, 'pruned_config.py')).model
    assert pruned.type == 'PrunedSegmentor'
    assert pruned.segmentor_type == dense.type == 'EncoderDecoder'
    for key in ('backbone', 'decode_head', 'auxiliary_head', 'test_cfg',
                'data_preprocessor'):
        assert pruned[key] == dense[key], key


def test_an_older_pruned_config_still_builds(small_pruned):
    """Configs that held the dense model under ``architecture`` load."""
    out, result = small_pruned
    cfg = load_config(osp.join(out, 'pruned_config.py'))
    fields = {k: cfg.model.pop(k) for k in list(cfg.model)
              if k not in ('type', 'pruned_structure', 'pruned_weights')}
    cfg.model.architecture = dict(fields, type=fields.pop('segmentor_type'))
    cfg.model.train_cfg = None  # what mmseg's init_model sets on top
    model = build_segmentor(cfg)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model._forward(x),
                                   result.model.eval()._forward(x))


OCRNET = 'mmseg::ocrnet/ocrnet_hr18s_4xb4-80k_ade20k-512x512.py'


def test_pruned_checkpoint_names_the_dense_classes(tmp_path, demo_root):
    """init_model finds the classes and palette in pruned.pth: the dense
    checkpoint's, else the config's dataset's. OCRNet's cascade head, which
    mmseg's fallback cannot read, infers too."""
    from mmseg.datasets import ADE20KDataset

    from tests.helpers import small_crop_config
    cfg = small_crop_config(OCRNET)
    dense = build_segmentor(cfg)
    classes = tuple(f'thing {i}' for i in range(150))
    palette = [[i, 255 - i, 7] for i in range(150)]
    checkpoint = str(tmp_path / 'dense.pth')
    torch.save(dict(state_dict=dense.state_dict(),
                    meta=dict(dataset_meta=dict(classes=classes,
                                                palette=palette))),
               checkpoint)
    image = osp.join(demo_root, 'JPEGImages', 'demo_00000.jpg')
    for name, weights, want in (
            ('from_checkpoint', checkpoint, classes),
            ('from_config', None, ADE20KDataset.METAINFO['classes'])):
        result = prune_segmentor(build_segmentor(cfg, weights), 'l1', 0.5,
                                 (64, 64))
        out = str(tmp_path / name)
        save_pruned(result, cfg, out, build_report(result, 'l1', 0.5))
        model = init_model(osp.join(out, 'pruned_config.py'),
                           osp.join(out, 'pruned.pth'), device='cpu')
        assert tuple(model.dataset_meta['classes']) == tuple(want), name
        assert len(model.dataset_meta['palette']) == 150
        prediction = inference_model(model, image)
        assert prediction.pred_sem_seg.data.shape[0] == 1
