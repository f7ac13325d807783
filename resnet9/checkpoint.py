"""Training checkpoints, so an interrupted run resumes instead of starting over.

A checkpoint holds the model, Adam, OneCycleLR, EMA and GradScaler states, every RNG the run
draws from (torch, NumPy, Python, and the train loader's own: ``rng_state()``), the history so
far, and a fingerprint of everything that shapes the run (params, max_lr, dataset checksum,
the precision run: :func:`run_fingerprint`).
On CPU a resumed run ends bit-identical to an uninterrupted one with the same seed.

Where: ``<project root>/.cache/checkpoints/<fingerprint>.pt`` (:func:`resnet9.paths.in_project`),
deleted once the run completes. When: at most once per :data:`EVERY_S` seconds of training
(``$RESNET9_CHECKPOINT_EVERY_S``; 0 = after every epoch), never after the final epoch. Why
there, outside DVC's outputs, and why that often: docs/resume.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from pydantic import BaseModel

from resnet9 import PipelineError, atomic_io, paths
from resnet9.engine import EpochStats, FitResult, TrainLoop

EVERY_S = 60.0  # default: seconds of training between two checkpoint writes
EVERY_S_ENV = "RESNET9_CHECKPOINT_EVERY_S"
KEEP = 3  # checkpoints of other (abandoned or paused) runs kept, the most recent ones
KEEP_ENV = "RESNET9_CHECKPOINT_KEEP"


def fingerprint(**things: Any) -> str:
    """SHA-256 (64 hex digits) of ``things`` as canonical JSON: what must match for a resume."""
    return hashlib.sha256(json.dumps(things, sort_keys=True, default=str).encode()).hexdigest()


def run_fingerprint(*, model: BaseModel, recipe: BaseModel, train: BaseModel, max_lr: float,
                    data: str, precision: str) -> str:
    """:func:`fingerprint` of a training run: its ``model``, ``recipe`` and ``train`` params,
    ``max_lr`` (learning rate), the dataset's sha256 ``data`` and the precision it runs in
    (``bf16``, ``fp16`` or ``fp32``), which replaces ``recipe.precision``.

    The precision chosen, not the setting: under ``auto`` a CPU with native bf16 picks bf16 and
    one without picks fp32, and one run must not switch between them halfway. So an ``auto``
    run resumes on a CPU of the other kind only with ``recipe.precision`` set to the precision
    its checkpoint trained in; otherwise it starts over there and its checkpoint is kept.
    """
    return fingerprint(model=model, recipe=recipe.model_copy(update={"precision": precision}),
                       train=train, max_lr=max_lr, data=data)


def path_for(fp: str, env: Mapping[str, str] = os.environ) -> Path:
    """The checkpoint file of the run with fingerprint ``fp`` (its first 16 hex digits), in
    :data:`resnet9.paths.CHECKPOINT_DIR` under the project root."""
    return paths.in_project(paths.CHECKPOINT_DIR, env) / f"{fp[:16]}.pt"


def every_s(env: Mapping[str, str] = os.environ) -> float:
    """Seconds of training between checkpoint writes: ``$RESNET9_CHECKPOINT_EVERY_S`` or
    :data:`EVERY_S`.

    Raises:
        PipelineError: the variable is not a number >= 0.
    """
    raw = env.get(EVERY_S_ENV)
    if raw is None or raw == "":
        return EVERY_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value >= 0 or math.isinf(value):
        raise PipelineError(f"{EVERY_S_ENV}: {raw!r} is not allowed; expected a number of "
                            "seconds >= 0 (0 = a checkpoint after every epoch)")
    return value


def save(path: Path | str, loop: TrainLoop, *, epoch: int, fp: str, result: FitResult) -> None:
    """Atomically write ``loop``'s state after ``epoch`` (0-based) completed epochs' worth of
    work, with the history so far (``result``) and the run's fingerprint ``fp``."""
    atomic_io.save_torch(path, {
        "fingerprint": fp,
        "epochs_done": epoch + 1,
        "model": loop.net.state_dict(),
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                "python": random.getstate(), "loader": loop.train_loader.rng_state()},
        "history": [vars(h) for h in result.history],
        "lrs": result.lrs,
        "ema": loop.ema.state_dict() if loop.ema is not None else None,
        "scaler": loop.precision.scaler.state_dict(),  # {} when disabled (not fp16)
    })


class Saver:
    """The epoch-end callback of :func:`resnet9.engine.fit` that writes ``loop``'s checkpoint to
    ``path`` when at least ``every_s`` seconds (of ``clock``) have passed since the last write
    or since the saver was made, and never after the final epoch (the run completes then).

    ``done`` is the number of epochs the checkpoint on disk holds: the resumed count at first
    (0 for a fresh run), then the count of each write.
    """

    def __init__(self, path: Path | str, loop: TrainLoop, every_s: float, fp: str,
                 clock: Callable[[], float] = time.monotonic, done: int = 0) -> None:
        self.path, self.loop, self.every_s, self.fp, self.clock = (
            Path(path), loop, every_s, fp, clock)
        self.last = clock()
        self.done = done

    def __call__(self, epoch: int, result: FitResult) -> None:
        if epoch + 1 >= self.loop.epochs or self.clock() - self.last < self.every_s:
            return
        save(self.path, self.loop, epoch=epoch, fp=self.fp, result=result)
        self.last = self.clock()
        self.done = epoch + 1

    def resume_hint(self) -> str:
        """What running the same command again does if the run stops now: a sentence."""
        if self.done:
            return (f"run the same command again to resume from epoch {self.done + 1} of "
                    f"{self.loop.epochs} ({self.path})")
        return (f"no checkpoint yet (one is written at the end of an epoch, at most once per "
                f"{self.every_s:g} s of training): the same command starts from epoch 1")


def keep(env: Mapping[str, str] = os.environ) -> int:
    """How many checkpoints of other runs :func:`prune` keeps: ``$RESNET9_CHECKPOINT_KEEP`` or
    :data:`KEEP`.

    Raises:
        PipelineError: the variable is not an integer >= 0.
    """
    raw = env.get(KEEP_ENV, "") or str(KEEP)
    if not raw.isdigit():
        raise PipelineError(f"{KEEP_ENV}: {raw!r} is not allowed; expected an integer >= 0 (the "
                            "checkpoints of other runs to keep)")
    return int(raw)


def prune(current: Path | str, keep: int) -> list[Path]:
    """Delete the checkpoints beside ``current`` but the ``keep`` most recently written, so that
    runs abandoned mid-way (about 105 MB each at width 1.0) do not pile up; ``current`` (this
    run's) is never deleted. Returns the deleted paths, oldest first."""
    current = Path(current)
    others = sorted((p for p in current.parent.glob("*.pt") if p.name != current.name),
                    key=lambda p: p.stat().st_mtime)
    stale = others[:max(len(others) - keep, 0)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def discard(path: Path | str) -> None:
    """Delete the checkpoint at ``path`` (a completed run's), and its directory if now empty."""
    path = Path(path)
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:  # not empty (other runs' checkpoints) or absent
        pass


def resume(path: Path | str, loop: TrainLoop, fp: str) -> tuple[int, FitResult | None, str]:
    """Restore ``loop`` from the checkpoint at ``path`` if it matches ``fp``.

    Returns ``(epochs already done, FitResult so far or None, a sentence saying what happened)``.
    A missing, unreadable or mismatched checkpoint returns ``(0, None, reason)`` and leaves
    ``loop`` as it was.
    """
    path = Path(path)
    if not path.is_file():
        return 0, None, (f"no checkpoint {path} for these params, data and precision "
                         f"({loop.precision.name}); training from scratch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a torn or foreign file is not worth dying for: start over
        return 0, None, f"checkpoint {path} unreadable ({err}); training from scratch"
    if state.get("fingerprint") != fp:
        return 0, None, f"checkpoint {path} is from other params, data or precision; discarded"
    loop.net.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    if loop.ema is not None:
        loop.ema.load_state_dict(state["ema"])
    if state["scaler"]:
        loop.precision.scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    loop.train_loader.set_rng_state(rng["loader"])
    result = FitResult([EpochStats(**h) for h in state["history"]], list(state["lrs"]))
    done = state["epochs_done"]
    return done, result, f"resuming from {path} after epoch {done}"
