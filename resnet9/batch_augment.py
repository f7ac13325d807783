"""The training augmentation of :mod:`resnet9.augment` as batched tensor ops on any device.

Meant for a GPU holding the whole dataset: one batch is augmented by a few indexing kernels
instead of 512 albumentations calls on the CPU. Each image gets, independently, the same
distribution as ``augment.train_transform`` (albumentations 2.0.8, Buslaev et al. 2020):

- PadIfNeeded to 40x40 (``reflect`` = cv2.BORDER_REFLECT_101, mirror without repeating the edge,
  or ``zero``), then RandomCrop 32: crop corner uniform over 0..8 on each axis;
- HorizontalFlip with p = 0.5;
- CutOut (DeVries & Taylor 2017) as CoarseDropout with one 8x8 hole, its corner uniform over
  0..24 on each axis (``integers(0, height - hole + 1)``: the hole lies inside the image),
  filled with the mean pixel ``round(255 * cifar10.MEAN)`` before normalization;
- Normalize with ``cifar10.MEAN`` / ``cifar10.STD``.

Padding and cropping are one gather: output pixel (y, x) of image n reads padded pixel
(crop_y + y, crop_x + x'), x' = 31 - x when flipped, which maps back to a source pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from resnet9.cifar10 import IMAGE_SIZE as SIZE
from resnet9.cifar10 import MEAN_PIXEL
from resnet9.preprocess import nhwc, to_float

# The augmentation's geometry, shared with resnet9/augment.py (the albumentations pipeline).
PAD = 4  # pixels of padding on each side before the random 32x32 crop
CUTOUT = 8  # side of the CutOut hole, in pixels


@dataclass(frozen=True)
class AugmentDraws:
    """The random draws that augment a batch, one per image, each of shape (N,): int64
    ``crop_y, crop_x`` in 0..2*PAD (corner in the padded 40x40 image), int64 ``hole_y, hole_x``
    in 0..SIZE-CUTOUT (corner in the output), bool ``flip``."""

    crop_y: torch.Tensor
    crop_x: torch.Tensor
    hole_y: torch.Tensor
    hole_x: torch.Tensor
    flip: torch.Tensor

    def __len__(self) -> int:
        return len(self.flip)


def draw(n: int, generator: torch.Generator, device: torch.device | str) -> AugmentDraws:
    """Draw :class:`AugmentDraws` for ``n`` images from ``generator`` (on its own device), then
    move them to ``device``. Same generator state -> same draws."""

    def ints(high: int) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=generator, device=generator.device).to(device)

    crop_y, crop_x = ints(2 * PAD + 1), ints(2 * PAD + 1)
    flip = ints(2).bool()
    hole_y, hole_x = ints(SIZE - CUTOUT + 1), ints(SIZE - CUTOUT + 1)
    return AugmentDraws(crop_y, crop_x, hole_y, hole_x, flip)


def apply(images: torch.Tensor, draws: AugmentDraws, pad_mode: str = "reflect") -> torch.Tensor:
    """Pad + crop, flip, CutOut and Normalize a batch, deterministically given ``draws``.

    Args:
        images: uint8 (N, 32, 32, 3) or (N, 3, 32, 32), on any device.
        draws: from :func:`draw`, on the images' device.
        pad_mode: ``reflect`` (cv2.BORDER_REFLECT_101) or ``zero``.

    Returns float32 (N, 3, 32, 32), channels_last, normalized with ``cifar10.MEAN`` / ``cifar10.STD``.
    """
    if pad_mode not in ("reflect", "zero"):
        raise ValueError(f"pad_mode: {pad_mode!r}; expected 'reflect' or 'zero'")
    x = nhwc(images)
    n, dev = x.shape[0], x.device
    offs = torch.arange(SIZE, device=dev)
    cols = torch.where(draws.flip[:, None], SIZE - 1 - offs, offs)
    rows = draws.crop_y[:, None] + offs - PAD  # (N, 32) source coordinates, may be outside
    cols = draws.crop_x[:, None] + cols - PAD
    if pad_mode == "reflect":  # BORDER_REFLECT_101: -1 -> 1, 32 -> 30
        rows, cols = (torch.where(i < 0, -i, torch.where(i >= SIZE, 2 * SIZE - 2 - i, i))
                      for i in (rows, cols))
    else:
        inside = ((rows >= 0) & (rows < SIZE))[:, :, None] & ((cols >= 0) & (cols < SIZE))[:, None]
        rows, cols = rows.clamp(0, SIZE - 1), cols.clamp(0, SIZE - 1)
    out = x[torch.arange(n, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if pad_mode == "zero":
        out = torch.where(inside[..., None], out, torch.zeros((), dtype=torch.uint8, device=dev))
    hy = (offs - draws.hole_y[:, None] >= 0) & (offs - draws.hole_y[:, None] < CUTOUT)
    hx = (offs - draws.hole_x[:, None] >= 0) & (offs - draws.hole_x[:, None] < CUTOUT)
    hole = (hy[:, :, None] & hx[:, None, :])[..., None]  # (N, 32, 32, 1)
    out = torch.where(hole, torch.tensor(MEAN_PIXEL, dtype=torch.uint8, device=dev), out)
    return to_float(out)
