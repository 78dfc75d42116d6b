"""Let torch>=2.6 load the checkpoints MMEngine writes, without unsafe pickle.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True`` and refuses
MMEngine checkpoints: their ``message_hub`` holds ``HistoryBuffer`` objects
(numpy arrays plus references to the class's own methods, pickled through
``getattr``) and ``meta`` holds numpy scalars. Importing the plugin:

1. adds ``HistoryBuffer``, ``ConfigDict``, ``bytes`` and the numpy array,
   dtype and scalar types to torch's allowlist (never ``getattr``);
2. makes ``HistoryBuffer`` pickle without its method references, so every
   checkpoint written from now on loads with plain ``torch.load``;
3. registers MMEngine's local checkpoint loader anew: it tries the safe
   default first and, for checkpoints written before (which contain
   ``getattr``), falls back to an unpickler that allows only torch's own
   allowlist plus ``getattr(HistoryBuffer, <statistic>)``.
"""
import _compat_pickle
import os.path as osp
import pickle
import types

import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

_NUMPY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')
_STATISTICS = ('min', 'max', 'current', 'mean')


def _numpy_globals():
    """numpy objects that pickled arrays, dtypes and scalars refer to."""
    multiarray = (getattr(np, '_core', None) or np.core).multiarray
    entries = [np.ndarray, np.dtype]
    for name in ('_reconstruct', 'scalar'):
        # numpy 1.x and 2.x write these under different module names.
        entries += [(getattr(multiarray, name), f'{module}.{name}')
                    for module in _NUMPY_MODULES]
    entries += [
        getattr(np.dtypes, name) for name in dir(np.dtypes)
        if name.endswith('DType')
    ]
    return entries


def _history_buffer_getstate(self):
    state = self.__dict__.copy()
    state.pop('statistics_methods', None)
    return state


def _history_buffer_setstate(self, state):
    self.__dict__.update(state)
    self.statistics_methods = {
        name: getattr(HistoryBuffer, name)
        for name in _STATISTICS
    }
    self.statistics_methods.update(HistoryBuffer._statistics_methods)


def _history_buffer_getattr(obj, name):
    """The one ``getattr`` an old MMEngine checkpoint may ask for."""
    if obj is HistoryBuffer and name in _STATISTICS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint')


class _AllowlistUnpickler(pickle.Unpickler):
    """Resolves only torch's allowlist and MMEngine's HistoryBuffer methods."""

    def find_class(self, module, name):
        # Protocol 2 streams use Python 2 module names (``__builtin__``).
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) == ('builtins', 'getattr'):
            return _history_buffer_getattr
        from torch import _weights_only_unpickler as wo
        allowed = {**wo._get_allowed_globals(), **wo._get_user_allowed_globals()}
        full_name = f'{module}.{name}'
        if full_name not in allowed:
            raise pickle.UnpicklingError(
                f'{full_name} is not allowlisted; refusing to load it')
        return allowed[full_name]


def _allowlist_load(file, **kwargs):
    """``pickle.load`` through :class:`_AllowlistUnpickler` (torch's legacy,
    non-zip format reads its header with ``pickle_module.load``)."""
    return _AllowlistUnpickler(file, **kwargs).load()


_allowlist_pickle = types.SimpleNamespace(
    Unpickler=_AllowlistUnpickler, load=_allowlist_load,
    __name__='mmseg_prune_allowlist_pickle')


def load_checkpoint_file(filename, map_location=None):
    """``torch.load`` for MMEngine checkpoints, old and new, without pickle.

    Args:
        filename (str): Path to the checkpoint.
        map_location: As in ``torch.load``.

    Returns:
        dict: The checkpoint.
    """
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(filename, map_location=map_location,
                          weights_only=False, pickle_module=_allowlist_pickle)


def _load_from_local(filename, map_location):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_checkpoint_file(filename, map_location)


def register_mmengine_safe_globals():
    """Apply the three measures of this module. Safe to call more than once."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        # ``bytes``: protocol 2 pickles an empty bytes object (an empty
        # HistoryBuffer's array data) as a call of bytes().
        add([HistoryBuffer, ConfigDict, bytes] + _numpy_globals())
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    HistoryBuffer.__setstate__ = _history_buffer_setstate
    CheckpointLoader.register_scheme('', _load_from_local, force=True)
