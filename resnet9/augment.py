"""The albumentations pipelines (Buslaev et al. 2020).

Train: pad to 40x40, random 32x32 crop, horizontal flip, CutOut (DeVries & Taylor 2017) with
one 8x8 hole, normalize. Test: normalize only. Both end in a CHW float32 tensor.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

from resnet9.batch_augment import CUTOUT, PAD
from resnet9.cifar10 import IMAGE_SIZE, MEAN, MEAN_PIXEL, STD

BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "zero": cv2.BORDER_CONSTANT}


def train_transform(pad_mode: str = "reflect", seed: int | None = None) -> A.Compose:
    """Training augmentation: pad 4 + RandomCrop 32, HorizontalFlip, CutOut 8x8, Normalize.

    Args:
        pad_mode: ``reflect`` (mirror without repeating the edge) or ``zero``.
        seed: seeds albumentations' generators (each DataLoader worker derives its own).

    Input is an HWC uint8 image (32, 32, 3); output ``image`` is a (3, 32, 32) float32 tensor.
    The CutOut hole is filled with the (rounded) mean pixel, so it is ~0 after normalization.
    """
    return A.Compose(
        [
            A.PadIfNeeded(IMAGE_SIZE + 2 * PAD, IMAGE_SIZE + 2 * PAD,
                          border_mode=BORDERS[pad_mode], fill=0),
            A.RandomCrop(IMAGE_SIZE, IMAGE_SIZE),
            A.HorizontalFlip(p=0.5),
            A.CoarseDropout(
                num_holes_range=(1, 1),
                hole_height_range=(CUTOUT, CUTOUT),
                hole_width_range=(CUTOUT, CUTOUT),
                fill=MEAN_PIXEL,
                p=1.0,
            ),
            A.Normalize(mean=MEAN, std=STD),
            ToTensorV2(),
        ],
        seed=seed,
    )


def test_transform() -> A.Compose:
    """Evaluation transform: Normalize only; HWC uint8 in, (3, 32, 32) float32 tensor out."""
    return A.Compose([A.Normalize(mean=MEAN, std=STD), ToTensorV2()])


def denormalize(x: np.ndarray) -> np.ndarray:
    """Undo Normalize for display: (N, 3, H, W) float32 -> (N, H, W, 3) float32 in [0, 1]."""
    mean = np.asarray(MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(STD, dtype=np.float32)[:, None, None]
    return np.clip(x * std + mean, 0, 1).transpose(0, 2, 3, 1)
