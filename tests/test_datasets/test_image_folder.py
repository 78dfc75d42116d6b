"""ImageFolderDataset on generated class folders, and its clear errors."""
import pytest
import torch
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

from mmseg_prune.datasets import VOC_CLASSES, make_demo_classification
from mmseg_prune.utils import PruneError

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='Resize',
                                                 scale=(32, 32)),
            dict(type='PackClsInputs')]


def test_reads_class_folders(tmp_path):
    counts = make_demo_classification(str(tmp_path / 'cls'), num=6, seed=0)
    assert sum(counts.values()) == 6 and set(counts) <= set(VOC_CLASSES)
    init_default_scope('mmseg')
    dataset = DATASETS.build(dict(type='ImageFolderDataset',
                                  data_root=str(tmp_path / 'cls'),
                                  pipeline=PIPELINE))
    classes = sorted(counts)
    assert dataset.metainfo['classes'] == tuple(classes)
    assert len(dataset) == 6
    labels = sorted(dataset[i]['label'] for i in range(6))
    assert labels == sorted(classes.index(c) for c, n in counts.items()
                            for _ in range(n))
    item = dataset[0]
    assert item['inputs'].shape == (3, 32, 32)
    assert item['inputs'].dtype == torch.uint8


def test_missing_or_empty_root(tmp_path):
    init_default_scope('mmseg')
    with pytest.raises(PruneError, match='label-free'):
        DATASETS.build(dict(type='ImageFolderDataset',
                            data_root=str(tmp_path / 'none'),
                            pipeline=PIPELINE))
    (tmp_path / 'empty' / 'a').mkdir(parents=True)
    with pytest.raises(PruneError, match='no images'):
        DATASETS.build(dict(type='ImageFolderDataset',
                            data_root=str(tmp_path / 'empty'),
                            pipeline=PIPELINE))
