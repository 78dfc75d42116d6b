from .builder import (build_segmentor, dense_architecture, dense_reference,
                      load_weights, pruned_config, trained_segmentor)
from .channel_gates import ChannelGates
from .logit_distiller import LogitDistiller
from .mtp_segmentor import (MTPSegmentor, check_period, load_classifier,
                            mtp_wrapper, prepare_step, task_at)
from .pruned_segmentor import PrunedSegmentor, strip_pretrained

__all__ = [
    'build_segmentor', 'dense_architecture', 'dense_reference', 'load_weights',
    'pruned_config', 'trained_segmentor', 'ChannelGates', 'LogitDistiller',
    'MTPSegmentor', 'check_period', 'load_classifier', 'mtp_wrapper',
    'prepare_step', 'task_at', 'PrunedSegmentor', 'strip_pretrained'
]
