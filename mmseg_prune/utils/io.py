"""Atomic file writes: a crash never leaves a half-written file behind."""
import ctypes
import errno
import os
import shutil
import tempfile
from contextlib import contextmanager

import torch

from .errors import PruneError


def _umask_mode(mode: int = 0o666) -> int:
    """``mode`` under the process's umask, as ``open`` would create it."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


@contextmanager
def _no_space_is_an_error(path):
    """Turn "no space left on device" into one clear error."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise PruneError(f'no space left on {os.path.dirname(path) or "."};'
                         ' free some space and run again (nothing was '
                         'written)') from exc


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; move it into place on success.

    Args:
        path (str): Final destination.

    Yields:
        str: Path to write to. It is renamed to ``path`` only if the block
        finishes without an exception, and removed otherwise. The file gets
        the umask's mode, as a plainly created file would.
    """
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix='.' + os.path.basename(path) + '.',
        suffix=os.path.splitext(path)[1],
        dir=os.path.dirname(path))
    os.close(fd)
    try:
        with _no_space_is_an_error(path):
            yield tmp
        os.chmod(tmp, _umask_mode())
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
        os.chmod(tmp, _umask_mode(0o777))
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns:
        bool: False where the system or file system cannot.
    """
    rename = getattr(ctypes.CDLL(None, use_errno=True), 'renameat2', None)
    if rename is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if rename(at_fdcwd, a.encode(), at_fdcwd, b.encode(),
              rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), a)


def _mirror(src: str, dst: str) -> None:
    """Make ``dst`` hold what ``src`` holds, by hard links where the file
    system allows (no data is copied and ``src`` stays whole)."""
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
    elif os.path.isdir(src):
        os.mkdir(dst)
        shutil.copystat(src, dst)
        for entry in os.listdir(src):
            _mirror(os.path.join(src, entry), os.path.join(dst, entry))
    else:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _remove_stale(parent: str, prefix: str) -> None:
    """Remove temporary folders of processes that no longer run (a
    ``kill -9`` during a write)."""
    for entry in os.listdir(parent):
        if not entry.startswith(prefix):
            continue
        try:
            pid = int(entry[len(prefix):].split('-')[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        except (ValueError, PermissionError):
            continue


@contextmanager
def atomic_file_set(folder: str):
    """Write several files into ``folder`` as one set.

    Yields a temporary folder beside ``folder``. When the block succeeds, the
    files written there replace their namesakes in ``folder`` in one step:
    the folder's other entries are mirrored into the new folder first (hard
    links), then the two folders are swapped atomically (two renames where
    the file system cannot swap). At every moment ``folder`` holds either
    the whole previous set or the whole new one, and all its other entries.
    On failure nothing changes; a killed run's temporary folder is removed
    by the next call.

    Args:
        folder (str): The destination folder (created when missing).

    Yields:
        str: The folder to write the set into.
    """
    folder = os.path.abspath(folder)
    parent, name = os.path.split(folder)
    os.makedirs(parent, exist_ok=True)
    prefix = f'.{name}.new-'
    _remove_stale(parent, prefix)
    tmp = tempfile.mkdtemp(prefix=f'{prefix}{os.getpid()}-', dir=parent)
    try:
        with _no_space_is_an_error(folder):
            yield tmp
        os.chmod(tmp, _umask_mode(0o777))
        for entry in os.listdir(tmp):
            os.chmod(os.path.join(tmp, entry), _umask_mode())
        if not os.path.isdir(folder):
            os.rename(tmp, folder)
            return
        written = set(os.listdir(tmp))
        for entry in os.listdir(folder):
            if entry not in written:
                _mirror(os.path.join(folder, entry),
                        os.path.join(tmp, entry))
        if not _exchange(tmp, folder):
            aside = tmp + '.old'
            os.rename(folder, aside)
            os.rename(tmp, folder)
            os.rename(aside, tmp)
        # ``tmp`` now holds the previous set, removed below.
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def check_writable_dir(path: str, what: str = 'work dir') -> None:
    """Raise a clear error now if files cannot be created in ``path``.

    A file where a folder is wanted, a read-only mount and a folder without
    permission are all found by creating (and removing) a file in the
    nearest existing folder, before any long work starts.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise PruneError(f'{what} "{path}" is a file, not a folder; pass '
                         'another --work-dir')
    probe = path
    while not os.path.isdir(probe):
        parent = os.path.dirname(probe)
        if os.path.exists(probe) or parent == probe:
            raise PruneError(f'{what} "{path}" cannot be created: '
                             f'"{probe}" is not a folder; pass another '
                             '--work-dir')
        probe = parent
    try:
        fd, name = tempfile.mkstemp(prefix='.write-test-', dir=probe)
        os.close(fd)
        os.remove(name)
    except OSError as exc:
        raise PruneError(f'{what} "{path}" is not writable ({exc.strerror} '
                         f'in "{probe}"); pass a --work-dir you can write '
                         'to') from exc


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)


def atomic_torch_save(obj, path):
    """``torch.save`` that never leaves a truncated checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def readable_file(path: str, what: str) -> str:
    """Return ``path`` or raise a clear error if it cannot be read."""
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise PruneError(f'{what} "{path}" does not exist or is not '
                         'readable; check the path')
    return path
