from .bf16_optim_wrapper import BF16OptimWrapper
from .distillation_hook import DistillationHook
from .mtp_hook import MTPHook
from .mtp_optimizer import MTPOptimWrapperConstructor
from .pruning_hook import PruningHook

__all__ = [
    'BF16OptimWrapper', 'DistillationHook', 'MTPHook',
    'MTPOptimWrapperConstructor', 'PruningHook'
]
