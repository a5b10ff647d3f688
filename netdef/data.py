"""Real handwritten digits for end-to-end checks, read from scikit-learn's bundled copy.

The digits are the UCI "Optical Recognition of Handwritten Digits" set that ships inside the
scikit-learn wheel (1797 images, 8x8, 17 grey levels), so nothing is downloaded at run time.
They are made LeNet-sized once, here, for training (models/weights/train_lenet.py) and for checks:
each pixel becomes a 3x3 block (nearest-neighbour upscale 8x8 -> 24x24), the 24x24 image is
zero-padded by 2 on every side to 28x28 (MNIST's centred-digit layout), and grey levels 0..16
are scaled to [0, 1]. The split is by position, not by a random generator, so it is the same
on every numpy: the first 1437 images train, the last 360 (20%) are held out.
"""
from __future__ import annotations

import functools

import numpy as np

from netdef.errors import NetdefError
from netdef.optional import require

__all__ = ["N_TRAIN", "SPLITS", "load_digits", "sample_photos"]

SPLITS = ("train", "test")
N_TRAIN = 1437  # images [0, 1437) train; [1437, 1797) are held out
_UPSCALE = 3  # 8x8 -> 24x24
_PAD = 2  # 24x24 -> 28x28
_MAX_LEVEL = 16.0  # grey levels are integers 0..16


@functools.lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 preprocessed images and labels (read-only; callers get copies)."""
    datasets = require("sklearn.datasets", "netdef.data (the handwritten digits bundled with scikit-learn)")
    bunch = datasets.load_digits()
    images = bunch.images.astype(np.float32) / np.float32(_MAX_LEVEL)  # (N, 8, 8) in [0, 1]
    images = images.repeat(_UPSCALE, axis=1).repeat(_UPSCALE, axis=2)
    images = np.pad(images, ((0, 0), (_PAD, _PAD), (_PAD, _PAD)))[:, None]
    labels = bunch.target.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_digits(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,)) of one split.

    split="train" gives the 1437 images LeNet-5 was trained on; split="test" the 360 held-out
    ones its documented accuracy (models/weights/README.md) is measured on.
    """
    if split not in SPLITS:
        raise NetdefError(f"netdef.data.load_digits: split must be one of {SPLITS}, got {split!r}")
    images, labels = _all_digits()
    part = slice(0, N_TRAIN) if split == "train" else slice(N_TRAIN, None)
    return images[part].copy(), labels[part].copy()


def sample_photos(size: int = 128, letterbox: bool = True) -> np.ndarray:
    """scikit-learn's two sample photographs (china.jpg, flower.jpg; 640x427 RGB) as a float32
    (2, 3, size, size) batch in [0, 1], letterboxed as YOLOv5 does: scaled to fit, centred, and
    padded with grey 114/255 (letterbox=False: the centre square, scaled). For detector checks
    on real images without a download."""
    try:
        from PIL import Image
        from sklearn.datasets import load_sample_images
    except ImportError as e:
        raise NetdefError("netdef.data.sample_photos needs scikit-learn and Pillow: "
                          "pip install 'scikit-learn>=1.3' pillow") from e
    batch = np.full((2, size, size, 3), 114, np.uint8)
    for i, photo in enumerate(load_sample_images().images):
        if not letterbox:
            h, w = photo.shape[:2]
            side = min(h, w)
            photo = photo[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        h, w = photo.shape[:2]
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (size - nh) // 2, (size - nw) // 2
        batch[i, top:top + nh, left:left + nw] = np.asarray(Image.fromarray(photo).resize((nw, nh), Image.BILINEAR))
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
