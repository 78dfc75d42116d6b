from .demo import (VOC_CLASSES, make_demo_classification, make_demo_dataset,
                   make_scene, voc_palette)
from .image_folder import ImageFolderDataset, PackClsInputs

__all__ = [
    'VOC_CLASSES', 'make_demo_classification', 'make_demo_dataset',
    'make_scene', 'voc_palette', 'ImageFolderDataset', 'PackClsInputs'
]
