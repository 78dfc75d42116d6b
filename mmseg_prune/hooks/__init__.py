from .mtp_hook import MTPHook, task_at
from .pruning_hook import PruningHook

__all__ = ['MTPHook', 'PruningHook', 'task_at']
