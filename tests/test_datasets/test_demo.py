import filecmp
import os
import os.path as osp
import subprocess
import sys

import numpy as np
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS
from PIL import Image

from mmseg_prune.apis import load_config
from mmseg_prune.datasets import make_demo_dataset

from tests.helpers import DEEPLABV3


def test_voc_layout(demo_root):
    names = open(osp.join(demo_root, 'ImageSets/Segmentation/train.txt')
                 ).read().split()
    val = open(osp.join(demo_root, 'ImageSets/Segmentation/val.txt')
               ).read().split()
    aug = open(osp.join(demo_root, 'ImageSets/Segmentation/aug.txt')
               ).read().split()
    assert len(names) + len(val) == 6 and not set(names) & set(val)
    assert aug == names
    for name in names + val:
        image = Image.open(osp.join(demo_root, 'JPEGImages', name + '.jpg'))
        mask = Image.open(
            osp.join(demo_root, 'SegmentationClass', name + '.png'))
        aug_mask = Image.open(
            osp.join(demo_root, 'SegmentationClassAug', name + '.png'))
        assert image.mode == 'RGB' and mask.mode == 'P'
        assert image.size == mask.size == aug_mask.size
        labels = np.array(mask)
        assert set(np.unique(labels)) <= set(range(21)) | {255}
        assert (labels == 255).any()  # VOC-style outlines
        assert 255 not in np.unique(np.array(aug_mask))
        assert len(set(np.unique(labels)) - {0, 255}) >= 1


def test_deterministic_by_seed(tmp_path):
    make_demo_dataset(str(tmp_path / 'a'), num=3, seed=7)
    make_demo_dataset(str(tmp_path / 'b'), num=3, seed=7)
    make_demo_dataset(str(tmp_path / 'c'), num=3, seed=8)
    for sub in ('JPEGImages', 'SegmentationClass'):
        files = sorted(os.listdir(tmp_path / 'a' / sub))
        match, mismatch, errors = filecmp.cmpfiles(
            tmp_path / 'a' / sub, tmp_path / 'b' / sub, files, shallow=False)
        assert match == files
        _, mismatch, _ = filecmp.cmpfiles(
            tmp_path / 'a' / sub, tmp_path / 'c' / sub, files, shallow=False)
        assert mismatch == files


def test_model_zoo_voc_aug_config_reads_it(demo_root):
    cfg = load_config(DEEPLABV3, data_root=demo_root)
    init_default_scope('mmseg')
    train = DATASETS.build(cfg.train_dataloader.dataset)
    val = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(train) == 2 * 4 and len(val) == 2  # train.txt + aug.txt
    sample = train[0]
    assert tuple(sample['inputs'].shape) == (3, 512, 512)
    assert sample['data_samples'].gt_sem_seg.data.shape == (1, 512, 512)


def test_cli(tmp_path):
    out = tmp_path / 'demo'
    proc = subprocess.run(
        [sys.executable, 'tools/make_demo_data.py', str(out), '--num', '4'],
        capture_output=True, text=True,
        cwd=osp.dirname(osp.dirname(osp.dirname(__file__))))
    assert proc.returncode == 0, proc.stderr
    assert 'wrote 4 images' in proc.stdout
    assert len(os.listdir(out / 'JPEGImages')) == 4
