from .demo import make_demo_dataset, make_scene, voc_palette

__all__ = ['make_demo_dataset', 'make_scene', 'voc_palette']
