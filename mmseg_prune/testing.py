"""Inputs for tests and benchmarks: fake batches of a segmentor's shape."""
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample


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


def data_batch(inputs, samples):
    """What a dataloader yields for ``inputs``/``samples`` (uint8 images)."""
    imgs = [(x - x.min()) / (x.max() - x.min()) * 255 for x in inputs]
    return dict(inputs=[i.to(torch.uint8) for i in imgs],
                data_samples=samples)
