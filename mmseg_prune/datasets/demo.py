"""A small synthetic segmentation dataset in the layout of PASCAL VOC 2012.

Scenes are textured shapes of the 20 VOC object classes on textured
backgrounds. Every class has its own colour range and texture (stripes of a
given frequency and angle, checks, dots or noise), so a network can learn
them, but colours overlap, shapes vary and backgrounds are busy, so it is not
trivial. Object outlines carry the VOC "void" label 255 in
``SegmentationClass`` (as in VOC) and not in ``SegmentationClassAug`` (as in
the SBD-derived aug masks).
"""
import os
import os.path as osp
from contextlib import contextmanager
from typing import Dict, Sequence

import cv2
import numpy as np
from PIL import Image

from ..utils.errors import PruneError
from ..utils.io import atomic_directory

NUM_CLASSES = 21
TEXTURES = ('stripes', 'checks', 'dots', 'noise')
#: File written into every generated folder: a folder holding it may be
#: replaced by a new generation; any other non-empty folder is refused.
MARKER = '.mmseg_prune_generated'


def check_destination(root: str, overwrite: bool = False) -> None:
    """Refuse to replace a non-empty folder that this module did not write.

    Args:
        root (str): The folder about to be replaced.
        overwrite (bool): Replace it anyway.
    """
    if overwrite or not osp.exists(root):
        return
    if not osp.isdir(root):
        raise PruneError(f'"{root}" exists and is not a folder; choose '
                         'another output folder')
    if os.listdir(root) and not osp.isfile(osp.join(root, MARKER)):
        raise PruneError(
            f'"{root}" is not empty and was not written by '
            'make_demo_data.py; generating here would delete what it holds. '
            'Choose an empty or new folder, or pass --overwrite to replace it')


@contextmanager
def _generated_directory(root: str, overwrite: bool):
    """:func:`atomic_directory` for a generated dataset, marked as such."""
    check_destination(root, overwrite)
    with atomic_directory(root) as tmp:
        yield tmp
        with open(osp.join(tmp, MARKER), 'w') as f:
            f.write('written by mmseg_prune.datasets.demo\n')


def voc_palette() -> list:
    """The standard PASCAL VOC colour map, as a flat list of 768 ints."""
    palette = []
    for label in range(256):
        r = g = b = 0
        c = label
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def _class_styles(rng: np.random.RandomState) -> Dict[int, dict]:
    styles = {}
    for label in range(1, NUM_CLASSES):
        styles[label] = dict(
            color=rng.randint(30, 226, size=3),
            texture=TEXTURES[label % len(TEXTURES)],
            period=rng.uniform(4, 14),
            angle=rng.uniform(0, np.pi))
    return styles


def _texture(kind, h, w, period, angle, rng) -> np.ndarray:
    """A texture in [-1, 1] of shape (h, w)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    if kind == 'stripes':
        return np.sin(2 * np.pi * u / period)
    if kind == 'checks':
        return np.sign(np.sin(np.pi * u / period) * np.sin(np.pi * v / period))
    if kind == 'dots':
        return (np.sin(2 * np.pi * u / period) *
                np.sin(2 * np.pi * v / period) > 0.5) * 2.0 - 1
    noise = rng.uniform(-1, 1, (h // 4 + 1, w // 4 + 1)).astype(np.float32)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR)


def _background(h, w, rng) -> np.ndarray:
    base = rng.randint(40, 216, size=3).astype(np.float32)
    gradient = np.linspace(-40, 40, w, dtype=np.float32)[None, :, None]
    tex = _texture(TEXTURES[rng.randint(len(TEXTURES))], h, w,
                   rng.uniform(10, 40), rng.uniform(0, np.pi), rng)
    return base + gradient * rng.uniform(-1, 1) + 25 * tex[..., None]


def _shape_mask(h, w, rng) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cy, cx = rng.randint(h // 6, h - h // 6), rng.randint(w // 6, w - w // 6)
    ry, rx = rng.randint(h // 10, h // 3), rng.randint(w // 10, w // 3)
    kind = rng.randint(3)
    if kind == 0:
        cv2.ellipse(mask, (cx, cy), (rx, ry), rng.uniform(0, 180), 0, 360, 1,
                    -1)
    elif kind == 1:
        box = cv2.boxPoints(((cx, cy), (2 * rx, 2 * ry), rng.uniform(0, 90)))
        cv2.fillPoly(mask, [box.astype(np.int32)], 1)
    else:
        n = rng.randint(3, 7)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.5, 1.0, n)
        pts = np.stack([cx + rx * radii * np.cos(angles),
                        cy + ry * radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask.astype(bool)


def make_scene(rng: np.random.RandomState, styles: Dict[int, dict],
               size: Sequence[int] = (240, 400)):
    """One image (H, W, 3) uint8 RGB and its label map (H, W) uint8.

    Args:
        rng (RandomState): Source of randomness.
        styles (dict): Class -> colour and texture.
        size (tuple[int, int]): Smallest and largest side, in pixels.
    """
    h, w = rng.randint(size[0], size[1] + 1), rng.randint(size[0],
                                                         size[1] + 1)
    image = _background(h, w, rng)
    label = np.zeros((h, w), np.uint8)
    for _ in range(rng.randint(1, 5)):
        cls = rng.randint(1, NUM_CLASSES)
        style = styles[cls]
        mask = _shape_mask(h, w, rng)
        tex = _texture(style['texture'], h, w, style['period'],
                       style['angle'], rng)
        color = style['color'] + rng.randint(-20, 21, size=3)
        obj = color[None, None, :] + 45 * tex[..., None]
        image[mask] = obj[mask]
        label[mask] = cls
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def _save_png(label: np.ndarray, path: str, palette: list) -> None:
    img = Image.fromarray(label, mode='P')
    img.putpalette(palette)
    img.save(path)


def make_demo_dataset(root: str, num: int = 40, seed: int = 0,
                      val_fraction: float = 0.25,
                      size: Sequence[int] = (240, 400),
                      overwrite: bool = False) -> Dict[str, int]:
    """Write the dataset under ``root``.

    ``root`` must be new, empty, or written by this module before (it holds
    :data:`MARKER`), unless ``overwrite``: a folder of the user's is never
    deleted by accident.

    Layout: ``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (palette PNG,
    255 on outlines), ``SegmentationClassAug/*.png`` (palette PNG, no
    outlines), ``ImageSets/Segmentation/{train,val,aug}.txt``. The dataset is
    written to a temporary folder and moved into place, so an interrupted run
    leaves nothing half-written.

    Args:
        root (str): Output folder; pass it as ``--data-root`` to a VOC config.
        num (int): Number of images. Default: 40.
        seed (int): Random seed; the same seed gives identical files.
        val_fraction (float): Share of images in ``val.txt``.
        size (tuple[int, int]): Smallest and largest image side.
        overwrite (bool): Replace ``root`` whatever it holds.

    Returns:
        dict[str, int]: Number of images per split.
    """
    if num < 2:
        raise ValueError('num must be at least 2 (one train, one val image)')
    rng = np.random.RandomState(seed)
    styles = _class_styles(rng)
    palette = voc_palette()
    with _generated_directory(root, overwrite) as tmp:
        for sub in ('JPEGImages', 'SegmentationClass', 'SegmentationClassAug',
                    'ImageSets/Segmentation'):
            os.makedirs(osp.join(tmp, sub))
        names = [f'demo_{i:05d}' for i in range(num)]
        kernel = np.ones((3, 3), np.uint8)
        for name in names:
            image, label = make_scene(rng, styles, size)
            Image.fromarray(image).save(
                osp.join(tmp, 'JPEGImages', name + '.jpg'), quality=90)
            _save_png(label, osp.join(tmp, 'SegmentationClassAug',
                                      name + '.png'), palette)
            edges = cv2.morphologyEx(label, cv2.MORPH_GRADIENT, kernel) > 0
            voc_label = label.copy()
            voc_label[edges] = 255
            _save_png(voc_label, osp.join(tmp, 'SegmentationClass',
                                          name + '.png'), palette)
        num_val = max(1, int(round(num * val_fraction)))
        splits = dict(train=names[num_val:], val=names[:num_val],
                      aug=names[num_val:])
        for split, ids in splits.items():
            with open(osp.join(tmp, 'ImageSets', 'Segmentation',
                               split + '.txt'), 'w') as f:
                f.write('\n'.join(ids) + '\n')
    return {split: len(ids) for split, ids in splits.items()}


#: Names of the 20 VOC object classes, in label order (1..20).
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse',
               'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
               'train', 'tvmonitor')


def make_demo_classification(root: str, num: int = 40, seed: int = 0,
                             size: Sequence[int] = (240, 400),
                             overwrite: bool = False) -> Dict[str, int]:
    """Write an ImageNet-style folder of generated scenes (``root/<class>/
    *.jpg``), each labelled with the class covering most of it.

    The scenes are drawn like :func:`make_demo_dataset`'s, so MTP's
    classification task and the segmentation task share their classes.
    Written to a temporary folder and moved into place; ``root`` is
    refused as :func:`make_demo_dataset` refuses it.

    Returns:
        dict[str, int]: Number of images per class folder.
    """
    rng = np.random.RandomState(seed + 1)
    styles = _class_styles(np.random.RandomState(seed))
    counts: Dict[str, int] = {}
    with _generated_directory(root, overwrite) as tmp:
        for i in range(num):
            image, label = make_scene(rng, styles, size)
            areas = np.bincount(label.ravel(), minlength=NUM_CLASSES)[1:]
            name = VOC_CLASSES[int(areas.argmax())]
            os.makedirs(osp.join(tmp, name), exist_ok=True)
            Image.fromarray(image).save(
                osp.join(tmp, name, f'demo_{i:05d}.jpg'), quality=90)
            counts[name] = counts.get(name, 0) + 1
    return counts
