"""Where and how a run executes: the device (and, with several GPUs, which one), and seeding.

With more than one GPU, each process claims one that no other process of this project holds:
an exclusive ``flock`` on ``<project root>/.cache/gpu-locks/gpu<i>.lock``, released by the
kernel when the process ends, however it ends; when every GPU is held, the run waits for one,
saying so once. Why: docs/pipeline.md, "More than one GPU".
"""

from __future__ import annotations

import fcntl
import os
import random
import sys
import time
from pathlib import Path
from typing import IO, Mapping

import numpy as np
import torch

from resnet9 import distributed, paths
from resnet9.params import ParamsError

_claimed: list[IO] = []  # the open lock files of this process's claims, held until it exits


def try_claim(count: int, directory: Path | str) -> tuple[int, IO] | None:
    """Claim the first of GPUs ``0 .. count - 1`` that no other claim holds: ``(index, the open
    lock file, to keep open while the GPU is used)``, or None when all are held. Closing the
    file (or the process ending) releases the claim."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        f = open(directory / f"gpu{index}.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another process (or another claim of this one)
            f.close()
            continue
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")  # who holds it, for a person looking
        f.flush()
        return index, f
    return None


def claim_gpu(count: int, directory: Path | str, poll_s: float = 2.0) -> tuple[int, IO]:
    """:func:`try_claim`, waiting (polling every ``poll_s`` seconds) while all ``count`` GPUs
    are held, with one line on stderr when it starts to wait."""
    said = False
    while (claim := try_claim(count, directory)) is None:
        if not said:
            print(f"waiting for a free GPU: all {count} are held by other runs of this project "
                  f"({directory})", file=sys.stderr, flush=True)
            said = True
        time.sleep(poll_s)
    return claim


def select_device(name: str, env: Mapping[str, str] = os.environ) -> torch.device:
    """``auto`` -> cuda, else mps, else cpu; an explicit name must be available. On CUDA it
    turns on ``cudnn.benchmark``, and with more than one GPU (outside torchrun) it claims a free
    one for this process (:func:`claim_gpu`) and returns ``cuda:<index>``.

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
        raise ParamsError(f"recipe.device: {name!r} is not available on this machine; "
                          f"expected 'auto' or one of {[d for d in has if has[d]]}")
    if name != "cuda":
        return torch.device(name)
    torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick kernels
    count = torch.cuda.device_count()
    if count < 2 or distributed.launched(env):  # under torchrun each rank takes its LOCAL_RANK
        return torch.device("cuda")
    if not _claimed:  # one claim per process, however often the device is asked for
        index, held = claim_gpu(count, paths.in_project(paths.GPU_LOCK_DIR, env))
        _claimed.append(held)
        torch.cuda.set_device(index)
    return torch.device("cuda", torch.cuda.current_device())


def describe(device: torch.device, world: int = 1) -> str:
    """Where a stage runs, for its log line: ``cpu, 2 threads``, ``cuda:0``, ``cuda x 4
    processes``. On a CPU the thread count is torch's (``OMP_NUM_THREADS`` sets it), since a run
    on one thread takes about twice as long as on two."""
    where = f"{device} x {world} processes" if world > 1 else str(device)
    if device.type == "cpu":
        threads = torch.get_num_threads()
        where += f", {threads} thread{'s' if threads != 1 else ''}"
    return where


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator seeded with ``seed`` for loaders."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
