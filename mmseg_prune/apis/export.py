"""Export a segmentor, dense or pruned, to ONNX and run it with
onnxruntime (the ``deploy`` extra: ``pip install mmseg-prune[deploy]``)."""
import os
import os.path as osp
import tempfile
import warnings
from typing import Sequence

import torch
import torch.nn as nn

from ..utils.errors import PruneError


class SegmentationLogits(nn.Module):
    """The segmentor's logits at the input size for one image, as
    ``predict`` computes them before the argmax.

    The input is the image as mmseg's data preprocessor hands it to the
    model: 1x3xHxW, normalised, in the preprocessor's channel order.
    """

    def __init__(self, segmentor: nn.Module, shape: Sequence[int]):
        super().__init__()
        self.segmentor = segmentor
        self.meta = [dict(img_shape=tuple(shape), pad_shape=tuple(shape),
                          ori_shape=tuple(shape))]

    def forward(self, inputs):
        return self.segmentor.encode_decode(inputs, self.meta)


def onnxruntime_module():
    """onnxruntime, or an error saying how to install the extra."""
    try:
        import onnx  # noqa: F401 - torch.onnx.export needs it
        import onnxruntime
    except ImportError as exc:
        raise PruneError(
            f'exporting needs onnx and onnxruntime ({exc}); install them '
            'with `pip install mmseg-prune[deploy]` (or `pip install onnx '
            'onnxruntime`)') from exc
    return onnxruntime


def export_onnx(segmentor: nn.Module, shape: Sequence[int], path: str,
                opset: int = 17) -> None:
    """Write ``segmentor``'s :class:`SegmentationLogits` graph to ``path``;
    an existing file is replaced only once the export succeeded."""
    onnxruntime_module()
    wrapper = SegmentationLogits(segmentor, shape).eval()
    inputs = torch.randn(1, 3, *shape)
    fd, tmp = tempfile.mkstemp(suffix='.onnx',
                               dir=osp.dirname(osp.abspath(path)))
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript-based exporter is deprecated, not removed; it
            # traces mmseg's heads, whose resizes read tensor shapes.
            warnings.simplefilter('ignore', DeprecationWarning)
            torch.onnx.export(wrapper, (inputs, ), tmp, opset_version=opset,
                              input_names=['inputs'], output_names=['logits'],
                              dynamo=False)
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001 - reported to the user
        first = str(exc).splitlines()[0] if str(exc) else ''
        raise PruneError(f'torch.onnx.export failed: {type(exc).__name__}: '
                         f'{first}') from exc
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def onnx_max_difference(session, segmentor: nn.Module,
                        inputs: torch.Tensor) -> float:
    """Largest |onnxruntime - torch| of the logits of one image."""
    logits = SegmentationLogits(segmentor, inputs.shape[-2:]).eval()
    with torch.no_grad():
        expected = logits(inputs)
    got = session.run(None, {'inputs': inputs.numpy()})[0]
    return float((torch.from_numpy(got) - expected).abs().max())


def onnxruntime_session(path: str, threads: int):
    """A CPU onnxruntime session of ``path`` on ``threads`` threads.

    Raises:
        PruneError: onnxruntime cannot load the file (an op it lacks, such
            as an mmcv kernel exported as a custom op).
    """
    onnxruntime = onnxruntime_module()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(
            path, options, providers=['CPUExecutionProvider'])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own types
        message = str(exc).splitlines()[0] if str(exc) else ''
        raise PruneError(
            f'onnxruntime cannot load {path}: {type(exc).__name__}: '
            f'{message}; the model uses an op onnxruntime lacks (mmcv\'s '
            'compiled ops, for example), so run it in torch') from exc
