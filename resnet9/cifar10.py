"""CIFAR-10's facts, each in one place: its classes, split sizes, image size and per-channel
statistics.

Imports nothing heavy, so that every stage and tool can use it (the download stage does not
import torch).
"""

from __future__ import annotations

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")  # label order
NUM_CLASSES = len(CLASSES)
SPLIT_COUNTS = {"train": 50_000, "test": 10_000}  # images per split, equal shares per class
IMAGE_SIZE = 32  # pixels, height and width
MEAN = (0.4914, 0.4822, 0.4465)  # per RGB channel, on the [0, 1] pixel scale (training set)
STD = (0.2470, 0.2435, 0.2616)
MEAN_PIXEL = tuple(round(255 * m) for m in MEAN)  # uint8 RGB: the CutOut fill, ~0 once normalized
