"""MMEngine checkpoints load under torch>=2.6 without unsafe pickle."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import _load_checkpoint

import mmseg_prune  # noqa: F401


def _buffer():
    buffer = HistoryBuffer()
    buffer.update(1.5)
    buffer.update(np.float64(2.5))
    return buffer


def test_new_checkpoints_load_with_plain_torch_load(tmp_path):
    path = str(tmp_path / 'new.pth')
    torch.save(dict(message_hub=dict(loss=_buffer()), seed=np.int64(3),
                    lr=np.float64(0.01)), path)
    ckpt = torch.load(path)  # weights_only=True by default
    assert ckpt['message_hub']['loss'].mean() == 2.0
    assert ckpt['message_hub']['loss'].current() == 2.5
    assert ckpt['seed'] == 3


def test_checkpoints_written_without_the_plugin(tmp_path):
    path = str(tmp_path / 'old.pth')
    # A process without the plugin writes HistoryBuffer with getattr refs.
    code = ('import torch, numpy as np; from mmengine.logging import '
            'HistoryBuffer as H; h = H(); h.update(np.float64(4.0)); '
            f'torch.save(dict(meta=dict(h=h)), {path!r})')
    subprocess.run([sys.executable, '-c', code], check=True)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # torch's own default still refuses it ...
    ckpt = _load_checkpoint(path)  # ... MMEngine's loader now reads it
    assert ckpt['meta']['h'].max() == 4.0


class _Evil:

    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_arbitrary_code_is_still_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(x=_Evil()), path)
    with pytest.raises(pickle.UnpicklingError, match='not allowlisted'):
        _load_checkpoint(path)
