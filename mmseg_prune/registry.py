"""Registries of mmseg-prune.

Models and hooks go to mmseg's own ``MODELS`` and ``HOOKS`` so that any mmseg
config can use them by ``type``; pruning criteria have a registry of their
own.
"""
from mmengine.registry import Registry

#: Channel importance criteria (:class:`~mmseg_prune.criteria.BaseCriterion`).
PRUNING_CRITERIA = Registry(
    'pruning criterion', scope='mmseg_prune',
    locations=['mmseg_prune.criteria'])
