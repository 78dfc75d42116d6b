from .errors import PruneError
from .io import (atomic_directory, atomic_path, atomic_torch_save,
                 atomic_write_text)
from .safe_globals import load_checkpoint_file, register_mmengine_safe_globals

__all__ = [
    'PruneError', 'atomic_directory', 'atomic_path', 'atomic_torch_save',
    'atomic_write_text', 'load_checkpoint_file',
    'register_mmengine_safe_globals'
]
