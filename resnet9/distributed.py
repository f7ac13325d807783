"""Multi-process data-parallel training with torch.distributed (DistributedDataParallel).

``train.nproc_per_node > 1`` makes the train stage relaunch itself under ``torchrun``
(``python -m torch.distributed.run --standalone``). Each rank trains on its own shard of the
training set (see :func:`shard`) with a per-rank batch of ``batch_size // world``, so one
step still sees ``batch_size`` images; DDP averages the gradients. NCCL on CUDA, gloo on CPU.
Only rank 0 writes outputs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
import torch.distributed as dist

from resnet9.data import Split


def launched() -> bool:
    """True inside a process started by torchrun."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch(nproc: int, module: str) -> int:
    """Run ``python -m module`` under torchrun with ``nproc`` processes; return its exit code."""
    return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={nproc}", "-m", module])


def init(device: torch.device) -> tuple[int, int, torch.device]:
    """Join the process group; return ``(rank, world size, this rank's device)``."""
    if device.type == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def shard(split: Split, rank: int, world: int, seed: int) -> Split:
    """Rank ``rank``'s shard: every ``world``-th image of a permutation seeded alike on all
    ranks (so a class-sorted split still gives every rank every class). Shards are disjoint
    and of equal size; the ``len % world`` images left over are not used."""
    order = np.random.default_rng(seed).permutation(len(split))
    mine = np.sort(order[: len(split) - len(split) % world][rank::world])
    return Split(split.x[mine], split.y[mine])


def mean(values: list[float], device: torch.device) -> list[float]:
    """The mean of ``values`` over all ranks (returned unchanged outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def finish() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
