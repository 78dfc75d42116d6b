from .distillation_hook import DistillationHook
from .mtp_hook import MTPHook, task_at
from .pruning_hook import PruningHook

__all__ = ['DistillationHook', 'MTPHook', 'PruningHook', 'task_at']
