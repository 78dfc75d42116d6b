import os

import pytest
import torch

from mmseg_prune.utils import atomic_torch_save, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    path = str(tmp_path / 'a.txt')
    atomic_write_text(path, 'one')
    atomic_write_text(path, 'two')
    assert open(path).read() == 'two'
    assert os.listdir(tmp_path) == ['a.txt']


def test_failed_save_leaves_old_file_and_no_temp(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    atomic_torch_save(dict(w=torch.ones(2)), path)

    class Unpicklable:

        def __reduce__(self):
            raise RuntimeError('boom')

    with pytest.raises(RuntimeError, match='boom'):
        atomic_torch_save(dict(w=Unpicklable()), path)
    assert os.listdir(tmp_path) == ['ckpt.pth']
    torch.testing.assert_close(torch.load(path)['w'], torch.ones(2))


def test_atomic_directory_replaces_or_leaves_alone(tmp_path):
    from mmseg_prune.utils import atomic_directory
    path = str(tmp_path / 'data')
    with atomic_directory(path) as tmp:
        open(os.path.join(tmp, 'one'), 'w').close()
    with atomic_directory(path) as tmp:
        open(os.path.join(tmp, 'two'), 'w').close()
    assert os.listdir(path) == ['two']
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_directory(path) as tmp:
            open(os.path.join(tmp, 'three'), 'w').close()
            raise RuntimeError('boom')
    assert os.listdir(tmp_path) == ['data']
    assert os.listdir(path) == ['two']
