"""The training augmentation of :mod:`resnet9.augment` as batched tensor ops on any device.

Meant for a GPU holding the whole dataset: one batch is augmented by a few indexing kernels
instead of 512 albumentations calls on the CPU. Each image gets, independently, the same
distribution as ``augment.train_transform`` (albumentations 2.0.8, Buslaev et al. 2020):

- PadIfNeeded to 40x40 (``reflect`` = cv2.BORDER_REFLECT_101, mirror without repeating the edge,
  or ``zero``), then RandomCrop 32: crop corner uniform over 0..8 on each axis;
- HorizontalFlip with p = 0.5;
- CutOut (DeVries & Taylor 2017) as CoarseDropout with one 8x8 hole, its corner uniform over
  0..24 on each axis (``integers(0, height - hole + 1)``: the hole lies inside the image),
  filled with the mean pixel ``round(255 * CIFAR10_MEAN)`` before normalization;
- Normalize with CIFAR10_MEAN / CIFAR10_STD.

Padding and cropping are one gather: output pixel (y, x) of image n reads padded pixel
(crop_y + y, crop_x + x'), x' = 31 - x when flipped, which maps back to a source pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from resnet9.augment import CIFAR10_MEAN, CIFAR10_STD, CUTOUT, PAD

SIZE = 32
MEAN_PIXEL = tuple(round(255 * m) for m in CIFAR10_MEAN)  # the CutOut fill, uint8 scale


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


def _nhwc(images: torch.Tensor) -> torch.Tensor:
    """(N, 32, 32, 3) or (N, 3, 32, 32) uint8 -> an (N, 32, 32, 3) view."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a 4-D uint8 batch, got {images.dtype} {tuple(images.shape)}")
    if images.shape[1:] == (SIZE, SIZE, 3):
        return images
    if images.shape[1:] == (3, SIZE, SIZE):
        return images.permute(0, 2, 3, 1)
    raise ValueError(f"expected (N, 32, 32, 3) or (N, 3, 32, 32), got {tuple(images.shape)}")


def _to_float(nhwc: torch.Tensor, mean: Sequence[float] = CIFAR10_MEAN,
              std: Sequence[float] = CIFAR10_STD) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 -> normalized (N, 3, 32, 32) float32 in channels_last layout."""
    mean = torch.tensor(mean, device=nhwc.device) * 255
    scale = 1 / (torch.tensor(std, device=nhwc.device) * 255)
    out = (nhwc.float() - mean) * scale  # still NHWC in memory
    return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def normalize(images: torch.Tensor, mean: Sequence[float] = CIFAR10_MEAN,
              std: Sequence[float] = CIFAR10_STD) -> torch.Tensor:
    """The test-time transform, Normalize only: uint8 RGB (N, 32, 32, 3) or (N, 3, 32, 32) ->
    float32 (N, 3, 32, 32), channels_last, on the images' device: ``(pixel / 255 - mean) /
    std`` per channel, with ``mean`` and ``std`` on the [0, 1] scale (CIFAR-10's, or a model
    file's ``normalization``).

    Raises:
        ValueError: not a 4-D uint8 batch of 32x32 RGB images.
    """
    return _to_float(_nhwc(images), mean, std)


def apply(images: torch.Tensor, draws: AugmentDraws, pad_mode: str = "reflect") -> torch.Tensor:
    """Pad + crop, flip, CutOut and Normalize a batch, deterministically given ``draws``.

    Args:
        images: uint8 (N, 32, 32, 3) or (N, 3, 32, 32), on any device.
        draws: from :func:`draw`, on the images' device.
        pad_mode: ``reflect`` (cv2.BORDER_REFLECT_101) or ``zero``.

    Returns float32 (N, 3, 32, 32), channels_last, normalized with CIFAR10_MEAN / CIFAR10_STD.
    """
    if pad_mode not in ("reflect", "zero"):
        raise ValueError(f"pad_mode: {pad_mode!r}; expected 'reflect' or 'zero'")
    x = _nhwc(images)
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
    return _to_float(out)
