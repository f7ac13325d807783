"""Device choice, data loaders, the training loop and evaluation.

The loops follow pytorch/examples mnist/main.py: :func:`train_one_epoch` and :func:`predict`
are plain functions; :func:`fit` runs the epochs under the One Cycle policy, records the
history, shows one progress bar with an ETA and stops on a non-finite loss.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from resnet9 import PipelineError, distributed
from resnet9.params import ParamsError
from resnet9.precision import Precision


GPU_SYNC_EVERY = 20  # training steps between reads of the loss back from a GPU

# With fp16 the GradScaler skips the steps whose gradients overflowed (the first few, while it
# finds its scale) and the One Cycle schedule advances anyway, as it should: torch's warning
# about scheduler.step() before optimizer.step() is expected there.
warnings.filterwarnings(
    "ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`")


def loss_sync_every(device: torch.device) -> int:
    """Training steps between reads of the loss back to the host: every step on the CPU,
    where it is free; :data:`GPU_SYNC_EVERY` on an accelerator, where each read makes the host
    wait for the device instead of queueing the next steps."""
    return 1 if device.type == "cpu" else GPU_SYNC_EVERY


class TrainingDiverged(PipelineError):
    """The loss became NaN or infinite."""


def select_device(name: str) -> torch.device:
    """``auto`` -> cuda, else mps, else cpu; an explicit name must be available. On CUDA it
    turns on ``cudnn.benchmark``.

    Raises:
        ParamsError: ``cuda`` or ``mps`` asked for on a machine without one.
    """
    has = {"cuda": torch.cuda.is_available(),
           "mps": getattr(torch.backends, "mps", None) is not None
           and torch.backends.mps.is_available(),
           "cpu": True}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if has[d])
    if not has[name]:
        raise ParamsError(f"train.device: {name!r} is not available on this machine; "
                          f"expected 'auto' or one of {[d for d in has if has[d]]}")
    if name == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick kernels
    return torch.device(name)


def resolve_num_workers(num_workers: int | str, device: torch.device) -> int:
    """``auto``: on CPU 0 (both cores go to compute; augmentation runs between steps), on an
    accelerator one worker per CPU core up to 8."""
    if num_workers != "auto":
        return int(num_workers)
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator seeded with ``seed`` for loaders."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    # albumentations keeps its own generators: give each worker (and epoch) a distinct seed.
    info = torch.utils.data.get_worker_info()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    transform = getattr(info.dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def make_loader(dataset, batch_size: int, *, shuffle: bool, num_workers: int,
                generator: torch.Generator | None = None, drop_last: bool = False,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader whose shuffling and per-worker augmentation are reproducible from ``generator``."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
        generator=generator, drop_last=drop_last, pin_memory=pin_memory,
        worker_init_fn=_seed_worker if num_workers else None,
        persistent_workers=False,
    )


@dataclass
class EpochStats:
    """Per-epoch figures: losses are means per image, accuracies fractions in [0, 1]."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float  # learning rate at the epoch's last step
    seconds: float  # wall time of the epoch, training and test pass


def train_one_epoch(model, loader, optimizer, scheduler, criterion, device, epoch: int,
                    on_step: Callable[[float], None] | None = None,
                    lrs: list[float] | None = None, ema=None,
                    sync_every: int = 1, precision: Precision | None = None
                    ) -> tuple[float, float]:
    """One pass over ``loader``: forward, loss, backward, Adam step, scheduler step per batch,
    and an update of ``ema`` (a ``torch.optim.swa_utils.AveragedModel``) when given.

    The forward pass runs under ``precision`` (fp32 when None); the backward and the step go
    through its GradScaler, which scales the loss for fp16 and passes through otherwise.

    The step losses are read back to the host (one device sync) every ``sync_every`` steps
    and after the last step; that is when ``on_step(loss)`` runs for each of those steps and
    when a non-finite loss is caught. On a GPU a value above 1 lets the host queue work ahead.

    Returns ``(mean loss per image, top-1 accuracy as a fraction)``. Appends each step's LR to
    ``lrs`` if given.

    Raises:
        TrainingDiverged: a loss is NaN or inf, naming ``epoch``, the step and its LR.
    """
    precision = precision or Precision("fp32", device.type)
    scaler = precision.scaler
    model.train()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, loss) not yet read back

    def read_back() -> None:
        values = torch.stack([loss for _, _, loss in pending]).tolist()  # the one sync
        for (step, lr, _), value in zip(pending, values):
            if not np.isfinite(value):
                raise TrainingDiverged(
                    f"loss is {value} at epoch {epoch + 1}, step {step + 1} (lr {lr:.3g}); "
                    "lower train.max_lr (or pick it with the LR range test: max_lr: auto)")
            if on_step:
                on_step(value)
        pending.clear()

    for step, (x, y) in enumerate(loader):
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with precision.autocast():
            logits = model(x)
            loss = criterion(logits, y)
        lr = optimizer.param_groups[0]["lr"]
        if lrs is not None:
            lrs.append(lr)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)  # skipped when fp16 gradients overflowed
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        total_loss += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        pending.append((step, lr, loss.detach().float()))
        if len(pending) >= sync_every:
            read_back()
    if pending:
        read_back()
    return float(total_loss) / seen, int(correct) / seen


@torch.no_grad()
def predict_views(model, loader, device, mirror: bool = False, desc: str | None = None,
                  precision: Precision | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One pass over ``loader``: ``(logits, mirrored_logits, labels)`` on the CPU, in loader
    order. Logits are (N, C) float32 of the images as given; ``mirrored_logits`` are those of
    their horizontal mirrors when ``mirror`` is set, else None; labels are (N,) int64.

    The forward pass runs under ``precision`` (fp32 when None). ``desc`` shows a progress bar
    with that label.
    """
    precision = precision or Precision("fp32", device.type)
    model.eval()
    plain, mirrored, labels = [], [], []
    for x, y in tqdm(loader, desc=desc, disable=desc is None, unit="batch", leave=False):
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with precision.autocast():
            plain.append(model(x).float().cpu())
            if mirror:
                mirrored.append(model(torch.flip(x, dims=[3])).float().cpu())
        labels.append(y.cpu())
    return torch.cat(plain), torch.cat(mirrored) if mirror else None, torch.cat(labels)


def predict(model, loader, device, precision: Precision | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) float32 and labels (N,) int64 on the CPU, in loader order; the forward
    pass under ``precision`` (fp32 when None)."""
    logits, _, labels = predict_views(model, loader, device, precision=precision)
    return logits, labels


def flip_tta(logits: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
    """Flip test-time augmentation (Page 2018): the mean of the (N, C) logits of the images and
    of their horizontal mirrors, as :func:`predict_views` returns them."""
    return (logits + mirrored) / 2


def score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """``(mean cross-entropy per image, top-1 accuracy as a fraction)`` of (N, C) logits."""
    loss = nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


@dataclass
class FitResult:
    """What :func:`fit` returns: one :class:`EpochStats` per epoch and the LR of every step."""

    history: list[EpochStats] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)


def fit(model, train_loader, test_loader, optimizer, scheduler, criterion, device, epochs: int,
        start_epoch: int = 0, result: FitResult | None = None,
        on_epoch_end: Callable[[int, FitResult], None] | None = None, ema=None,
        eval_model=None, show: bool = True, precision: Precision | None = None) -> FitResult:
    """Train from ``start_epoch`` to ``epochs``, evaluating on ``test_loader`` after each epoch:
    ``eval_model`` if given, else the EMA weights when ``ema`` is given, else ``model``.

    Training and evaluation run under ``precision`` (fp32 when None).
    Under torch.distributed the training loss and accuracy are averaged over ranks; ``show``
    turns the progress bar and epoch lines on (rank 0).

    One tqdm bar counts every training step of the run, with its ETA. ``on_epoch_end(epoch,
    result)`` runs after each epoch (checkpointing). Raises :class:`TrainingDiverged`.
    """
    result = result or FitResult()
    evaluated = eval_model if eval_model is not None else ema.module if ema is not None else model
    steps = len(train_loader)
    bar = tqdm(total=epochs * steps, initial=start_epoch * steps, unit="step",
               desc="train", dynamic_ncols=True, mininterval=1.0, disable=not show)
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            bar.set_description(f"train epoch {epoch + 1}/{epochs}")
            train_loss, train_acc = train_one_epoch(
                model, train_loader, optimizer, scheduler, criterion, device, epoch,
                on_step=lambda loss: (bar.update(), bar.set_postfix(loss=f"{loss:.3f}",
                                                                     refresh=False)),
                lrs=result.lrs, ema=ema, sync_every=loss_sync_every(device), precision=precision,
            )
            train_loss, train_acc = distributed.mean([train_loss, train_acc], device)
            test_loss, test_acc = score(*predict(evaluated, test_loader, device, precision))
            result.history.append(EpochStats(
                epoch + 1, train_loss, train_acc, test_loss, test_acc,
                result.lrs[-1], time.perf_counter() - t0))
            if show:
                bar.write(f"epoch {epoch + 1:>3}/{epochs}: train loss {train_loss:.4f} "
                          f"acc {train_acc:.4f} | test loss {test_loss:.4f} acc {test_acc:.4f} | "
                          f"{result.history[-1].seconds:.1f} s")
            if on_epoch_end:
                on_epoch_end(epoch, result)
    finally:
        bar.close()
    return result
