"""Images to the network's input: the test-time normalization that training, evaluation,
predict, export and the model file share (torch only: no albumentations, no OpenCV)."""

from __future__ import annotations

from typing import Sequence

import torch

from resnet9.cifar10 import IMAGE_SIZE, MEAN, STD


def nhwc(images: torch.Tensor) -> torch.Tensor:
    """(N, 32, 32, 3) or (N, 3, 32, 32) uint8 -> an (N, 32, 32, 3) view.

    Raises:
        ValueError: not a 4-D uint8 batch of 32x32 RGB images.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a 4-D uint8 batch, got {images.dtype} {tuple(images.shape)}")
    if images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 3):
        return images
    if images.shape[1:] == (3, IMAGE_SIZE, IMAGE_SIZE):
        return images.permute(0, 2, 3, 1)
    raise ValueError(f"expected (N, 32, 32, 3) or (N, 3, 32, 32), got {tuple(images.shape)}")


def to_float(images_nhwc: torch.Tensor, mean: Sequence[float] = MEAN,
             std: Sequence[float] = STD) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 -> normalized (N, 3, 32, 32) float32 in channels_last layout."""
    mean = torch.tensor(mean, device=images_nhwc.device) * 255
    scale = 1 / (torch.tensor(std, device=images_nhwc.device) * 255)
    out = (images_nhwc.float() - mean) * scale  # still NHWC in memory
    return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def normalize(images: torch.Tensor, mean: Sequence[float] = MEAN,
              std: Sequence[float] = STD) -> torch.Tensor:
    """The test-time transform, Normalize only: uint8 RGB (N, 32, 32, 3) or (N, 3, 32, 32) ->
    float32 (N, 3, 32, 32), channels_last, on the images' device: ``(pixel / 255 - mean) /
    std`` per channel, with ``mean`` and ``std`` on the [0, 1] scale (CIFAR-10's, or a model
    file's ``normalization``).

    Raises:
        ValueError: not a 4-D uint8 batch of 32x32 RGB images.
    """
    return to_float(nhwc(images), mean, std)
