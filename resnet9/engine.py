"""The training loop, evaluation, and the run's verdict.

The loops follow pytorch/examples mnist/main.py: :func:`train_one_epoch` and :func:`predict`
are plain functions (a :class:`TrainLoop` holds what training uses, and :func:`build_loop`
makes one from the params); :func:`fit` runs the epochs under the One Cycle policy, records the
history, shows one progress bar with an ETA and stops on a non-finite loss. :func:`learned`
says whether a finished run beat chance.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from resnet9 import PipelineError, cifar10, distributed, loaders, precision, recipe, schedule
from resnet9.data import Split
from resnet9.params import ModelParams, RecipeParams, TrainParams
from resnet9.precision import Precision


GPU_SYNC_EVERY = 20  # training steps between reads of the loss back from a GPU

# With fp16 the GradScaler skips the steps whose gradients overflowed (the first few, while it
# finds its scale) and the One Cycle schedule advances anyway, as it should: torch's warning
# about scheduler.step() before optimizer.step() is expected there, and silenced around it.
SKIPPED_STEP_WARNING = r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`"


def loss_sync_every(device: torch.device) -> int:
    """Training steps between reads of the loss back to the host: every step on the CPU,
    where it is free; :data:`GPU_SYNC_EVERY` on an accelerator, where each read makes the host
    wait for the device instead of queueing the next steps."""
    return 1 if device.type == "cpu" else GPU_SYNC_EVERY


class TrainingDiverged(PipelineError):
    """The loss became NaN or infinite."""


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


@dataclass
class TrainLoop:
    """Everything :func:`train_one_epoch` and :func:`fit` use, built once by the train stage.

    ``net`` is the ResNet-9 whose weights Adam steps and checkpoints save; ``stepped`` is what
    the training steps call: ``net`` itself, or ``net`` compiled and/or wrapped in
    DistributedDataParallel (sharing its parameters). :attr:`evaluated` says which network is
    tested after each epoch and saved at the end.
    """

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # stepped once per batch
    criterion: nn.Module  # (logits (N, C) float, labels (N,) int64) -> mean loss per image
    train_loader: Iterable  # batches (x (B, 3, 32, 32) float32, y (B,) int64); rng_state()
    test_loader: Iterable
    device: torch.device
    epochs: int
    precision: Precision
    ema: torch.optim.swa_utils.AveragedModel | None = None  # updated after every step
    stepped: nn.Module | None = None  # None: net

    def __post_init__(self) -> None:
        if self.stepped is None:
            self.stepped = self.net

    @property
    def evaluated(self) -> nn.Module:
        """The network tested and saved: the EMA weights when there is an EMA, else ``net``
        (never the DDP or compile wrapper)."""
        return self.ema.module if self.ema is not None else self.net


def build_loop(model_p: ModelParams, recipe_p: RecipeParams, train_p: TrainParams,
               train: Split, test: Split, *, max_lr: float, generator: torch.Generator,
               device: torch.device, rank: int = 0, world: int = 1) -> TrainLoop:
    """Everything training needs, from the params, as a :class:`TrainLoop` ready for
    :func:`fit`, on ``device`` as process ``rank`` of ``world`` (DDP when ``world`` > 1).

    The test loader; the train loader (this rank's share of ``train``, shuffled and augmented
    with ``generator``, ``recipe.batch_size // world`` images a batch); a fresh ResNet-9 from
    torch's global RNG (seed it first: :func:`resnet9.runtime.seed_everything`), Adam,
    ``torch.compile`` and the DDP wrapper when asked for; the loss, the EMA, the precision, and
    the One Cycle schedule from ``max_lr / train.div_factor`` up to ``max_lr`` and back.

    Raises:
        ParamsError: ``recipe.batch_size`` exceeds the number of training images.
    """
    test_loader = loaders.test_loader(test, device, num_workers=recipe_p.num_workers)
    train_loader = loaders.train_loader(train, recipe_p, device, generator, rank, world)
    net = recipe.build_model(model_p, device)
    # OneCycleLR sets every step's LR; Adam's is its first, LRMIN
    opt = recipe.optimizer(net, max_lr / train_p.div_factor, recipe_p)
    stepped = torch.compile(net) if train_p.compile else net  # shares net's parameters
    if world > 1:  # DDP copies rank 0's weights to every rank, before the EMA copies them
        stepped = nn.parallel.DistributedDataParallel(stepped)
    criterion, ema = recipe.criterion(recipe_p), recipe.ema(net, train_p.ema_decay)
    amp = precision.resolve(recipe_p.precision, device)
    scheduler = schedule.one_cycle(opt, max_lr, train_p.epochs, len(train_loader),
                                   train_p.peak_epoch, train_p.div_factor)
    return TrainLoop(net=net, optimizer=opt, scheduler=scheduler, criterion=criterion,
                     train_loader=train_loader, test_loader=test_loader, device=device,
                     epochs=train_p.epochs, precision=amp, ema=ema, stepped=stepped)


def train_one_epoch(loop: TrainLoop, epoch: int, on_step: Callable[[float], None] | None = None,
                    lrs: list[float] | None = None) -> tuple[float, float]:
    """One pass over ``loop.train_loader``: forward, loss, backward, Adam step, scheduler step
    per batch, and an update of ``loop.ema`` when there is one.

    The forward pass runs under ``loop.precision``; the backward and the step go through its
    GradScaler, which scales the loss for fp16 and passes through otherwise.

    The step losses are read back to the host (one device sync) every
    :func:`loss_sync_every` steps and after the last step; that is when ``on_step(loss)`` runs
    for each of those steps and when a non-finite loss is caught.

    Returns ``(mean loss per image, top-1 accuracy as a fraction)``. Appends each step's LR to
    ``lrs`` if given.

    Raises:
        TrainingDiverged: a loss is NaN or inf, naming ``epoch``, the step and its LR.
    """
    model, optimizer, device = loop.stepped, loop.optimizer, loop.device
    scaler, sync_every = loop.precision.scaler, loss_sync_every(device)
    # Adam's step: optimizer.step itself, or with fp16 the GradScaler's, which unscales the
    # gradients first and skips the step when they overflowed.
    optimizer_step = partial(scaler.step, optimizer) if scaler.is_enabled() else optimizer.step
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
                    f"loss is {value} at epoch {epoch + 1}, step {step + 1} (lr {lr:.3g})")
            if on_step:
                on_step(value)
        pending.clear()

    for step, (x, y) in enumerate(loop.train_loader):
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with loop.precision.autocast():
            logits = model(x)
            loss = loop.criterion(logits, y)
        lr = optimizer.param_groups[0]["lr"]
        if lrs is not None:
            lrs.append(lr)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # fp16: the loss scaled up so small gradients survive
        optimizer_step()
        scaler.update()  # fp16: the next scale; otherwise nothing
        with warnings.catch_warnings():  # the schedule advances over a skipped fp16 step
            warnings.filterwarnings("ignore", message=SKIPPED_STEP_WARNING)
            loop.scheduler.step()
        if loop.ema is not None:
            loop.ema.update_parameters(loop.net)
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


def fit(loop: TrainLoop, start_epoch: int = 0, result: FitResult | None = None,
        callbacks: Sequence[Callable[[int, FitResult], None]] = (),
        show: bool = True) -> FitResult:
    """Train from ``start_epoch`` to ``loop.epochs``, testing ``loop.evaluated`` on
    ``loop.test_loader`` after each epoch, and return the history (appended to ``result``,
    a resumed run's history so far, when given).

    Under torch.distributed the training loss and accuracy are averaged over ranks; ``show``
    turns the progress bar and epoch lines on (rank 0).

    One tqdm bar counts every training step of the run, with its ETA. After each epoch every
    one of ``callbacks`` is called in order as ``callback(epoch, result)`` (0-based epoch):
    live logging, then checkpointing.

    Raises:
        TrainingDiverged: from :func:`train_one_epoch`.
    """
    result = result or FitResult()
    epochs, steps = loop.epochs, len(loop.train_loader)
    bar = tqdm(total=epochs * steps, initial=start_epoch * steps, unit="step",
               desc="train", dynamic_ncols=True, mininterval=1.0, disable=not show)

    def show_step(train_loss: float) -> None:
        bar.update()
        bar.set_postfix(train_loss=f"{train_loss:.3f}", refresh=False)

    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            bar.set_description(f"train epoch {epoch + 1}/{epochs}")
            if hasattr(loop.train_loader, "set_epoch"):  # a DDP rank: deal this epoch's share
                loop.train_loader.set_epoch(epoch)
            train_loss, train_acc = train_one_epoch(loop, epoch, lrs=result.lrs,
                                                    on_step=show_step)
            train_loss, train_acc = distributed.mean([train_loss, train_acc], loop.device)
            test_loss, test_acc = score(*predict(loop.evaluated, loop.test_loader, loop.device,
                                                 loop.precision))
            result.history.append(EpochStats(
                epoch + 1, train_loss, train_acc, test_loss, test_acc,
                result.lrs[-1], time.perf_counter() - t0))
            if show:
                bar.write(f"epoch {epoch + 1:>3}/{epochs}: train loss {train_loss:.4f} "
                          f"acc {train_acc:.4f} | test loss {test_loss:.4f} acc {test_acc:.4f} | "
                          f"{result.history[-1].seconds:.1f} s")
            for callback in callbacks:
                callback(epoch, result)
    finally:
        bar.close()
    return result


# A run whose test top-1 is at most this multiple of chance (1 / 10 classes) did not learn: 15%
# on CIFAR-10, where a tiny run that learned a little ends near 18%.
LEARNED_OVER_CHANCE = 1.5


def learned_threshold() -> float:
    """The test top-1 (a fraction) a run must beat to count as having learned."""
    return LEARNED_OVER_CHANCE / cifar10.NUM_CLASSES


def learned(test_acc: float) -> bool:
    """Whether a test top-1 ``test_acc`` (a fraction in [0, 1]) beats :func:`learned_threshold`."""
    return test_acc > learned_threshold()
