"""tools/export_onnx.py on a pruned model: the file computes the model."""
import os
import os.path as osp

import numpy as np
import pytest
import torch

from mmseg_prune.apis import build_segmentor, load_config
from mmseg_prune.utils.cli import run_cli

from test_prune_tool import _tool

onnxruntime = pytest.importorskip('onnxruntime')


@pytest.fixture
def pruned_config(small_pruned):
    return osp.join(small_pruned[0], 'pruned_config.py')


def test_exports_a_pruned_model(pruned_config, tmp_path, capsys):
    out = str(tmp_path / 'pruned.onnx')
    code = run_cli(_tool('export_onnx').main, [
        pruned_config, '--shape', '64', '96', '--out', out, '--runs', '2'])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'max |diff|' in printed and 'onnxruntime' in printed
    assert os.listdir(tmp_path) == ['pruned.onnx']  # no temporary left
    # The file, run here, gives the pruned model's logits at input size.
    model = build_segmentor(load_config(pruned_config))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        logits = model._forward(x)
        expected = torch.nn.functional.interpolate(
            logits, size=(64, 96), mode='bilinear',
            align_corners=model.decode_head.align_corners)
    session = onnxruntime.InferenceSession(
        out, providers=['CPUExecutionProvider'])
    (got, ) = session.run(None, {'inputs': x.numpy()})
    assert got.shape == (1, 19, 64, 96)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def test_a_mismatch_is_an_error(pruned_config, tmp_path,
                                 capsys):
    out = str(tmp_path / 'pruned.onnx')
    code = run_cli(_tool('export_onnx').main, [
        pruned_config, '--shape', '64', '64', '--out', out, '--atol',
        '-1'])
    assert code != 0
    assert 'differ from torch' in capsys.readouterr().err


def test_a_file_onnxruntime_cannot_load_is_one_clear_error(tmp_path):
    from mmseg_prune.apis import onnxruntime_session
    from mmseg_prune.utils import PruneError
    path = tmp_path / 'broken.onnx'
    path.write_bytes(b'not an onnx model')
    with pytest.raises(PruneError, match='onnxruntime cannot load'):
        onnxruntime_session(str(path), 1)
