"""The loaders: batches ``(x, y)`` for training and evaluation, from either augmentation backend.

- :class:`ImageLoader`, the ``albumentations`` backend: a DataLoader over an
  :class:`AugmentedDataset` that runs :mod:`resnet9.augment`'s pipeline image by image on the
  CPU, in worker processes when ``num_workers`` > 0.
- :class:`DeviceLoader`, the ``torch`` backend: the dataset resident on the device, each batch
  augmented by :mod:`resnet9.batch_augment`'s tensor ops (the same distribution).

Both yield x float32 (B, 3, 32, 32), normalized, and y int64 (B,), and both expose their random
state as :meth:`rng_state` / :meth:`set_rng_state`, so that a checkpoint can resume the exact
sequence of batches without knowing which backend made them.
"""

from __future__ import annotations

import math
import os
import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from resnet9 import batch_augment, preprocess
from resnet9.data import Split
from resnet9.params import ParamsError, RecipeParams

TEST_BATCH_SIZE = 1024  # images per evaluation batch: forward passes only, memory is no issue


class AugmentedDataset(torch.utils.data.Dataset):
    """A :class:`Split` seen through an albumentations transform.

    Item ``i`` is ``(image, label)``: (3, 32, 32) float32 tensor and an int64 scalar tensor.
    """

    def __init__(self, split: Split, transform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        image = self.transform(image=self.split.x[i])["image"]
        return image, torch.as_tensor(self.split.y[i])


def _seed_worker(worker_id: int) -> None:
    # albumentations keeps its own generators: give each worker (and epoch) a distinct seed.
    info = torch.utils.data.get_worker_info()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info.dataset.transform.set_random_seed(seed)


class ImageLoader(torch.utils.data.DataLoader):
    """The ``albumentations`` backend: a DataLoader of ``(x, y)`` batches of ``split`` through
    ``transform``, shuffled with ``generator`` when ``shuffle``, or drawn from ``sampler`` (a
    rank's share under DDP: :func:`rank_share`) when one is given.

    With workers, each one reseeds albumentations from torch's per-worker seed (itself drawn
    from ``generator``), so the batches are reproducible from ``generator`` alone; without, the
    transform's own generators run in this process and :meth:`rng_state` includes them.
    """

    def __init__(self, split: Split, transform, batch_size: int, *, shuffle: bool,
                 num_workers: int, generator: torch.Generator | None = None,
                 pin_memory: bool = False, sampler: torch.utils.data.Sampler | None = None):
        super().__init__(AugmentedDataset(split, transform), batch_size=batch_size,
                         shuffle=shuffle and sampler is None, sampler=sampler,
                         num_workers=num_workers, generator=generator, pin_memory=pin_memory,
                         worker_init_fn=_seed_worker if num_workers else None)

    def set_epoch(self, epoch: int) -> None:
        """Deal the images for ``epoch`` (0-based) when a DDP sampler draws them."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def rng_state(self) -> dict[str, Any]:
        """The shuffling generator's state and each transform's numpy and Python generator
        states (albumentations 2 gives every transform its own pair)."""
        return {
            "shuffle": None if self.generator is None else self.generator.get_state(),
            "transforms": [(t.random_generator.bit_generator.state, t.py_random.getstate())
                           for t in self.dataset.transform.transforms],
        }

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`rng_state` returned, through albumentations'
        ``set_random_state``."""
        if self.generator is not None:
            self.generator.set_state(state["shuffle"])
        for t, (np_state, py_state) in zip(self.dataset.transform.transforms,
                                           state["transforms"]):
            np_random, py_random = np.random.default_rng(), random.Random()
            np_random.bit_generator.state = np_state
            py_random.setstate(py_state)
            t.set_random_state(np_random, py_random)


class DeviceLoader:
    """The ``torch`` backend: batches of a :class:`Split` kept on ``device``, ``(x, y)`` with x
    float32 (B, 3, 32, 32) normalized, channels_last (augmented by
    :func:`resnet9.batch_augment.apply` when ``augment``), y int64 (B,).

    The images stay uint8 NHWC on the device (150 MB for CIFAR-10's 50,000). Each pass shuffles
    with ``torch.randperm`` and draws augmentations from ``generator`` (on the CPU or the
    device), so a generator seeded alike gives the same epochs; with a ``sampler`` (a rank's
    share under DDP: :func:`rank_share`) the sampler's indices are used
    instead. ``len`` is the number of batches: ceil(N / batch_size), or floor with
    ``drop_last``, N being the sampler's length when there is one.
    """

    def __init__(self, split: Split, batch_size: int, device: torch.device | str = "cpu",
                 shuffle: bool = True, augment: bool = True,
                 generator: torch.Generator | None = None, pad_mode: str = "reflect",
                 drop_last: bool = False, sampler: torch.utils.data.Sampler | None = None):
        self.device = torch.device(device)
        self.x = torch.as_tensor(split.x).to(self.device)
        self.y = torch.as_tensor(split.y, dtype=torch.int64).to(self.device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.generator = generator if generator is not None else torch.Generator()
        self.pad_mode, self.drop_last, self.sampler = pad_mode, drop_last, sampler

    def __len__(self) -> int:
        n = (len(self.sampler) if self.sampler is not None else len(self.y)) / self.batch_size
        return math.floor(n) if self.drop_last else math.ceil(n)

    def set_epoch(self, epoch: int) -> None:
        """Deal the images for ``epoch`` (0-based) when a DDP sampler draws them."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        n, gen = len(self.y), self.generator
        if self.sampler is not None:
            order = torch.tensor(list(self.sampler), device=self.device)
        elif self.shuffle:
            order = torch.randperm(n, generator=gen, device=gen.device).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.x[idx]
            x = (batch_augment.apply(x, batch_augment.draw(len(idx), gen, self.device),
                                     self.pad_mode)
                 if self.augment else preprocess.normalize(x))
            yield x, self.y[idx]

    def rng_state(self) -> dict[str, Any]:
        """The one generator that shuffles and draws the augmentations."""
        return {"generator": self.generator.get_state()}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`rng_state` returned."""
        self.generator.set_state(state["generator"])


def resolve_num_workers(num_workers: int | str, device: torch.device) -> int:
    """``auto``: on CPU 0 (both cores go to compute; augmentation runs between steps), on an
    accelerator one worker per CPU core up to 8."""
    if num_workers != "auto":
        return int(num_workers)
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def augment_backend(recipe: RecipeParams, device: torch.device) -> str:
    """``albumentations`` or ``torch``; ``auto`` picks torch on CUDA only."""
    if recipe.augment_backend != "auto":
        return recipe.augment_backend
    return "torch" if device.type == "cuda" else "albumentations"


def rank_share(n: int, rank: int, world: int, seed: int) -> DistributedSampler:
    """Rank ``rank``'s share of ``n`` training images under DDP, dealt anew every epoch: torch's
    ``DistributedSampler`` shuffles ``range(n)`` with ``seed + epoch`` (the loader's
    ``set_epoch``) alike on all ranks and gives rank r every ``world``-th index from r. The
    shares of an epoch are disjoint and equal (``drop_last``: the ``n % world`` images left over
    change from epoch to epoch), so every rank takes the same number of steps."""
    return DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                              drop_last=True)


def train_loader(split: Split, recipe: RecipeParams, device: torch.device,
                 generator: torch.Generator, rank: int = 0,
                 world: int = 1) -> ImageLoader | DeviceLoader:
    """Shuffled, augmented batches of ``recipe.batch_size // world`` images, from the backend
    :func:`augment_backend` picks, drawn with ``generator``. With ``world`` > 1 DDP processes
    they come from rank ``rank``'s share of each epoch (:func:`rank_share` at ``recipe.seed``),
    so one step of all ranks sees ``recipe.batch_size`` images.

    Raises:
        ParamsError: ``recipe.batch_size`` exceeds the number of training images.
    """
    if recipe.batch_size > len(split):
        raise ParamsError(f"recipe.batch_size: {recipe.batch_size} is larger than the "
                          f"{len(split)} training images; expected at most {len(split)}")
    batch_size = recipe.batch_size // world
    share = rank_share(len(split), rank, world, recipe.seed) if world > 1 else None
    if augment_backend(recipe, device) == "torch":
        return DeviceLoader(split, batch_size, device, shuffle=True, augment=True,
                            generator=generator, pad_mode=recipe.pad_mode, sampler=share)
    from resnet9 import augment  # albumentations and OpenCV: imported for this backend only

    num_workers = resolve_num_workers(recipe.num_workers, device)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return ImageLoader(split, augment.train_transform(recipe.pad_mode, seed), batch_size,
                       shuffle=True, generator=generator, num_workers=num_workers,
                       pin_memory=device.type == "cuda", sampler=share)


def test_loader(split: Split, device: torch.device, batch_size: int = TEST_BATCH_SIZE,
                num_workers: int | str = "auto") -> ImageLoader | DeviceLoader:
    """Normalized test batches, in dataset order (kept on the device on CUDA)."""
    if device.type == "cuda":
        return DeviceLoader(split, batch_size, device, shuffle=False, augment=False)
    from resnet9 import augment  # albumentations and OpenCV: imported for this backend only

    return ImageLoader(split, augment.test_transform(), batch_size, shuffle=False,
                       num_workers=resolve_num_workers(num_workers, device))
