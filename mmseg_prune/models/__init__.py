from .pruned_segmentor import PrunedSegmentor, strip_pretrained

__all__ = ['PrunedSegmentor', 'strip_pretrained']
