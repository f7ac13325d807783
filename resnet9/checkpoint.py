"""Per-epoch training checkpoints, so an interrupted run resumes instead of starting over.

A checkpoint holds the model, Adam, OneCycleLR and GradScaler states, every RNG the run draws from (torch,
NumPy, Python, the loader's shuffling generator, albumentations' generators), the history so
far, and a fingerprint of everything that shapes the run (params, max_lr, dataset checksum).
A checkpoint whose fingerprint differs from the current run's is ignored, so a changed param
never resumes from a stale state. On CPU a resumed run ends bit-identical to an uninterrupted
one with the same seed.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet9 import artifacts
from resnet9.engine import EpochStats, FitResult


def fingerprint(**things: Any) -> str:
    """SHA-256 of ``things`` as canonical JSON (what must match for a resume)."""
    return hashlib.sha256(json.dumps(things, sort_keys=True, default=str).encode()).hexdigest()


def _transform_states(transform) -> list:
    return [(t.random_generator.bit_generator.state, t.py_random.getstate())
            for t in getattr(transform, "transforms", [])]


def _restore_transform(transform, states: list) -> None:
    for t, (np_state, py_state) in zip(getattr(transform, "transforms", []), states):
        t.random_generator.bit_generator.state = np_state
        t.py_random.setstate(py_state)


def save(path: Path | str, *, epoch: int, fp: str, model, optimizer, scheduler,
         generator: torch.Generator, transform, result: FitResult, ema=None,
         scaler: torch.amp.GradScaler | None = None) -> None:
    """Atomically write the state after ``epoch`` (0-based) completed epochs' worth of work."""
    artifacts.save_torch(path, {
        "fingerprint": fp,
        "epochs_done": epoch + 1,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                "python": random.getstate(), "loader": generator.get_state(),
                "transform": _transform_states(transform)},
        "history": [vars(h) for h in result.history],
        "lrs": result.lrs,
        "ema": ema.state_dict() if ema is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,  # {} when disabled
    })


def resume(path: Path | str, *, fp: str, model, optimizer, scheduler,
           generator: torch.Generator, transform, ema=None,
           scaler: torch.amp.GradScaler | None = None) -> tuple[int, FitResult | None, str]:
    """Restore the run from ``path`` if it matches ``fp``.

    Returns ``(epochs already done, FitResult so far or None, a sentence saying what happened)``.
    A missing, unreadable or mismatched checkpoint returns ``(0, None, reason)``.
    """
    path = Path(path)
    if not path.is_file():
        return 0, None, "no checkpoint; training from scratch"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a torn or foreign file is not worth dying for: start over
        return 0, None, f"checkpoint {path} unreadable ({err}); training from scratch"
    if state.get("fingerprint") != fp:
        return 0, None, f"checkpoint {path} is from other params or data; discarded"
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    generator.set_state(rng["loader"])
    _restore_transform(transform, rng["transform"])
    result = FitResult([EpochStats(**h) for h in state["history"]], list(state["lrs"]))
    done = state["epochs_done"]
    return done, result, f"resuming from {path} after epoch {done}"
