"""Atomic file writes: a crash never leaves a half-written file behind."""
import os
import shutil
import tempfile
from contextlib import contextmanager

import torch


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; move it into place on success.

    Args:
        path (str): Final destination.

    Yields:
        str: Path to write to. It is renamed to ``path`` only if the block
        finishes without an exception, and removed otherwise.
    """
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix='.' + os.path.basename(path) + '.',
        suffix=os.path.splitext(path)[1],
        dir=os.path.dirname(path))
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_directory(path):
    """Yield a temporary folder next to ``path``; on success it replaces
    ``path`` (and whatever was there), otherwise it is removed.

    Args:
        path (str): Final folder.

    Yields:
        str: Folder to write into.
    """
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.' + os.path.basename(path) + '.',
                           dir=os.path.dirname(path))
    try:
        yield tmp
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)


def atomic_torch_save(obj, path):
    """``torch.save`` that never leaves a truncated checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
