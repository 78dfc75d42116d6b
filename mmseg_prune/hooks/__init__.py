from .pruning_hook import PruningHook

__all__ = ['PruningHook']
