"""Multi-process data-parallel training with torch.distributed (DistributedDataParallel).

``train.nproc_per_node > 1`` makes the train stage relaunch itself under ``torchrun``
(``python -m torch.distributed.run --standalone``). Every epoch the training set is shuffled
alike on all ranks and dealt out among them (torch's ``DistributedSampler`` with ``set_epoch``:
:func:`resnet9.loaders.rank_share`), so N processes see the same distribution as one; each
takes a batch of ``batch_size // world``, so one step still sees ``batch_size`` images, and DDP
averages the gradients. NCCL on CUDA, gloo on CPU. Only rank 0 writes outputs.

Multi-node training (torchrun's rendezvous across hosts) is not supported: a spec run is short
on one GPU (docs/results.md), so a sweep spreads whole runs over machines instead
(docs/pipeline.md, "More than one GPU").
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Mapping

import torch
import torch.distributed as dist


def launched(env: Mapping[str, str] = os.environ) -> bool:
    """True inside a process started by torchrun (which sets ``LOCAL_RANK`` and ``WORLD_SIZE``)."""
    return "LOCAL_RANK" in env and "WORLD_SIZE" in env


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


def weights_differ(net: torch.nn.Module, device: torch.device) -> float:
    """The largest absolute difference between this rank's parameters and rank 0's (0.0 outside
    a process group); every rank gets the same answer. DDP keeps the parameters in step; a
    non-zero value means the ranks trained different models."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0.0
    mine = torch.cat([p.detach().float().flatten() for p in net.parameters()]).to(device)
    first = mine.clone()
    dist.broadcast(first, src=0)
    worst = (mine - first).abs().max()
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


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
