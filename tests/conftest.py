"""Shared fixtures: generated data, small configs, fake batches."""
import logging
import os.path as osp

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmseg_prune  # noqa: F401 - registers the plugin
from mmseg_prune.apis import build_segmentor, load_config
from mmseg_prune.datasets import make_demo_dataset

MMLogger.get_current_instance().setLevel(logging.WARNING)

DEEPLABV3 = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'
#: A small segmentor with an auxiliary head, for fast tests.
SMALL = 'mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py'


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory):
    """A generated VOC-layout dataset of 6 images."""
    root = str(tmp_path_factory.mktemp('data') / 'voc')
    make_demo_dataset(root, num=6, seed=0)
    return root


def small_crop_config(config, size=64):
    """Load ``config`` with every crop, scale and pad shrunk to ``size``."""
    cfg = load_config(config)

    def shrink(node):
        if isinstance(node, dict):
            for key in ('crop_size', 'size'):
                if isinstance(node.get(key), (tuple, list)):
                    node[key] = (size, size)
            if node.get('type') in ('RandomResize', 'Resize') and \
                    'scale' in node:
                node['scale'] = (size * 2, size)
            for value in node.values():
                shrink(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                shrink(value)

    for key in ('model', 'train_dataloader', 'val_dataloader',
                'test_dataloader', 'train_pipeline', 'test_pipeline'):
        if key in cfg:
            shrink(cfg[key])
    cfg.crop_size = (size, size)
    return cfg


def small_voc_config(demo_root, size=64):
    """FCN R18 (with an aux head) for the generated VOC data at ``size``."""
    from mmseg_prune.apis import set_data_root
    from mmseg_prune.models import strip_pretrained
    cfg = small_crop_config(DEEPLABV3, size=size)
    cfg.model = strip_pretrained(small_crop_config(SMALL, size=size).model)
    cfg.model.decode_head.num_classes = 21
    cfg.model.auxiliary_head.num_classes = 21
    set_data_root(cfg, demo_root)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].update(num_workers=0, persistent_workers=False)
    cfg.train_dataloader.batch_size = 2
    return cfg


def fake_batch(model, size=64, batch=2, seed=0):
    """Normalized inputs and data samples with random labels."""
    gen = torch.Generator().manual_seed(seed)
    num_classes = model.decode_head.num_classes if not isinstance(
        model.decode_head, torch.nn.ModuleList) else \
        model.decode_head[-1].num_classes
    inputs = torch.randn(batch, 3, size, size, generator=gen)
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size),
            pad_shape=(size, size), padding_size=[0, 0, 0, 0]))
        label = torch.randint(0, num_classes, (1, size, size), generator=gen)
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return inputs, samples


@pytest.fixture(scope='session')
def small_dense():
    """FCN R18-D8 at 64x64 with norm scales drawn at random, as after
    training (the initial ResNet zeroes the last scale of every block,
    which blocks the gradients of the layers before it). Copy before
    changing it."""
    torch.manual_seed(0)
    model = build_segmentor(small_crop_config(SMALL, 64))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


@pytest.fixture
def small_model():
    """An FCN R18-D8 with an FCN auxiliary head, initial weights."""
    return build_segmentor(load_config(SMALL))


def data_batch(inputs, samples):
    """What a dataloader yields for ``inputs``/``samples`` (uint8 images)."""
    imgs = [(x - x.min()) / (x.max() - x.min()) * 255 for x in inputs]
    return dict(inputs=[i.to(torch.uint8) for i in imgs],
                data_samples=samples)


def run_on_two_ranks(fn, out_dir, *args):
    """Run ``fn(rank, *args)`` in two forked processes joined by a gloo
    group on the CPU; return what each rank's call returned.

    ``out_dir`` holds the group's rendezvous file and the results.
    """
    import torch.multiprocessing as mp
    mp.start_processes(_rank_worker, args=(fn, str(out_dir), args),
                       nprocs=2, join=True, start_method='fork')
    return [torch.load(osp.join(str(out_dir), f'rank{rank}.pth'))
            for rank in range(2)]


def _rank_worker(rank, fn, out_dir, args):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group(
        'gloo', init_method=f'file://{osp.join(out_dir, "init")}',
        rank=rank, world_size=2)
    try:
        torch.save(fn(rank, *args), osp.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


TESTS_DIR = osp.dirname(__file__)
