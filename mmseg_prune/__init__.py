"""mmseg-prune: structured channel pruning for MMSegmentation.

Importing the package registers its models, criteria and hooks in mmseg's
and its own registries, and lets torch>=2.6 load MMEngine checkpoints (see
:mod:`mmseg_prune.utils.safe_globals`). Add it to any config with
``custom_imports = dict(imports=['mmseg_prune'], allow_failed_imports=False)``.
"""
from .utils.safe_globals import register_mmengine_safe_globals

register_mmengine_safe_globals()

from . import criteria, datasets, hooks, models  # noqa: E402,F401 - registers
from .version import __version__  # noqa: E402

__all__ = ['__version__']
