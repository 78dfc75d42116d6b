from .channel_gates import ChannelGates
from .logit_distiller import LogitDistiller
from .mtp_segmentor import MTPSegmentor, load_classifier, mtp_wrapper
from .pruned_segmentor import PrunedSegmentor, strip_pretrained

__all__ = [
    'ChannelGates', 'LogitDistiller', 'MTPSegmentor', 'load_classifier',
    'mtp_wrapper',
    'PrunedSegmentor', 'strip_pretrained'
]
