import os.path as osp

import pytest
import torch
from mmseg.apis import inference_model, init_model
from mmseg.models.segmentors import EncoderDecoder

from mmseg_prune.apis import (build_report, build_segmentor, load_config,
                              prune_segmentor, save_pruned)
from mmseg_prune.utils import PruneError

from tests.helpers import SMALL


@pytest.fixture(scope='module')
def pruned_dir(tmp_path_factory):
    cfg = load_config(SMALL)
    result = prune_segmentor(build_segmentor(cfg), 'l1', 0.5, (64, 64))
    out = str(tmp_path_factory.mktemp('pruned'))
    save_pruned(result, cfg, out, build_report(result, 'l1', 0.5))
    return out, result


def test_builds_a_plain_segmentor(pruned_dir):
    out, result = pruned_dir
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


def test_mmseg_apis_accept_it(pruned_dir, demo_root):
    out, result = pruned_dir
    model = init_model(osp.join(out, 'pruned_config.py'),
                       osp.join(out, 'pruned.pth'), device='cpu')
    image = osp.join(demo_root, 'JPEGImages', 'demo_00000.jpg')
    prediction = inference_model(model, image)
    import mmcv
    height, width = mmcv.imread(image).shape[:2]
    assert prediction.pred_sem_seg.data.shape == (1, height, width)


def test_refuses_weights_of_another_architecture(pruned_dir):
    out, _ = pruned_dir
    model = build_segmentor(load_config(osp.join(out, 'pruned_config.py')))
    dense_state = build_segmentor(load_config(SMALL)).state_dict()
    with pytest.raises(PruneError, match='does not fit this pruned model'):
        model.load_state_dict(dense_state, strict=False)


def test_missing_weights_file_is_an_error(pruned_dir):
    """A config moved without its weights does not train from random
    weights in silence; None says "no pruned weights" explicitly."""
    out, _ = pruned_dir
    cfg = load_config(osp.join(out, 'pruned_config.py'))
    cfg.model.pruned_weights = osp.join(out, 'moved.pth')
    with pytest.raises(PruneError, match='not found.*pruned_weights=None'):
        build_segmentor(cfg)
    cfg.model.pruned_weights = None
    build_segmentor(cfg)


def test_work_dir_moved_whole_still_loads(pruned_dir, tmp_path):
    """pruned_config.py finds pruned.pth beside itself."""
    import shutil
    out, _ = pruned_dir
    moved = str(tmp_path / 'moved')
    shutil.copytree(out, moved)
    cfg = load_config(osp.join(moved, 'pruned_config.py'))
    assert cfg.model.pruned_weights == osp.join(moved, 'pruned.pth')
    model = build_segmentor(cfg)
    reference = torch.load(osp.join(out, 'pruned.pth'))['state_dict']
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key
