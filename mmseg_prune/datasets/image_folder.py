"""An ImageNet-style classification folder, for MTP's classification task."""
import os
import os.path as osp

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.dataset import BaseDataset
from mmseg.registry import DATASETS, TRANSFORMS

from ..utils.errors import PruneError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


@DATASETS.register_module()
class ImageFolderDataset(BaseDataset):
    """Images in ``data_root/<class folder>/``, labelled by folder.

    Classes are the sub-folders in sorted order (torchvision's
    ``ImageFolder`` convention), which is ImageNet's class order for its
    ``train`` folder (``n01440764`` ... ), the order of the classifiers that
    pre-trained backbones come with.

    Args:
        data_root (str): The folder holding one sub-folder per class.
        pipeline (list[dict]): Transforms; end with ``PackClsInputs``.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self, data_root: str, pipeline=(), **kwargs):
        super().__init__(data_root=data_root, pipeline=list(pipeline),
                         **kwargs)

    def load_data_list(self):
        root = self.data_root
        if not osp.isdir(root):
            raise PruneError(
                f'classification data root "{root}" does not exist; point '
                'it to an ImageNet-style folder (one sub-folder per class) or '
                'drop cls_dataloader for the label-free mode')
        classes = sorted(d for d in os.listdir(root)
                         if osp.isdir(osp.join(root, d)))
        data_list = []
        for label, name in enumerate(classes):
            folder = osp.join(root, name)
            for file in sorted(os.listdir(folder)):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    data_list.append(
                        dict(img_path=osp.join(folder, file), label=label))
        if not data_list:
            raise PruneError(f'no images under "{root}/<class>/"')
        self._metainfo['classes'] = tuple(classes)
        return data_list


@TRANSFORMS.register_module()
class PackClsInputs(BaseTransform):
    """``img`` (H, W, C) -> ``inputs`` (C, H, W) uint8 tensor, plus
    ``label``."""

    def transform(self, results: dict) -> dict:
        img = np.ascontiguousarray(results['img'].transpose(2, 0, 1))
        return dict(inputs=torch.from_numpy(img), label=results['label'])
