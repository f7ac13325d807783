"""Where a trained model came from: code, software, hardware, data, params, time.

:func:`collect` returns one flat-ish dict that the train stage stores in ``data/model.pt``
(key ``provenance``) and in ``metrics/provenance.json``; ``python -m resnet9.predict --info`` prints
it back. Every value is a JSON scalar, a list or a dict of them, so the dict survives both
``torch.save`` / ``torch.load(weights_only=True)`` and JSON.
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

# Not code: what the pipeline itself rewrites, DVC's own folder (config, .gitignore), and
# params.yaml, which `dvc exp run -S` writes and the provenance records in full anyway. A change
# there does not make the tree "dirty".
NOT_CODE = ("metrics", "plots", "dvc.lock", ".dvc", "params.yaml")


def git_state(cwd: Path | str = ".") -> dict[str, Any]:
    """The checked-out commit and whether the tree differs from it.

    Returns ``{"git_commit": 40-hex str, "git_dirty": bool, "git_dirty_files": [str]}``;
    ``git_dirty`` counts tracked and untracked files, except the pipeline's own outputs and
    DVC's folder and params.yaml (:data:`NOT_CODE`) and what ``.gitignore`` hides (``data/``). At most 20 changed
    paths are listed. Outside a git work tree, or without git, all three are None.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              check=True, timeout=30).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        excludes = [f":(exclude){p}" for p in NOT_CODE]
        status = git("status", "--porcelain", "--", ".", *excludes).splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None, "git_dirty_files": None}
    return {"git_commit": commit, "git_dirty": bool(status),
            "git_dirty_files": [line[3:] for line in status[:20]]}


def device_name(device: torch.device) -> str:
    """A human name of ``device``: the GPU's name on CUDA, else the CPU model (from
    ``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere), e.g. ``AMD EPYC 7B13``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.processor() or platform.machine()})"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def collect(*, params: dict, dataset_sha256: Any, train_seconds: float,
            device: torch.device, cwd: Path | str = ".", precision: str | None = None,
            cpu: dict | None = None) -> dict[str, Any]:
    """Provenance of a training run that just finished on ``device``.

    Args:
        params: the params as the train stage read them (``params.yaml``, all sections).
        dataset_sha256: ``data/cifar10/meta.json``'s ``sha256`` (``{"train": hex, "test": hex}``).
        train_seconds: wall time of the training epochs, in seconds.
        device: where it trained.
        cwd: the repository whose git state is recorded.
        precision: the precision it trained in (``bf16``, ``fp16``, ``fp32``).
        cpu: what the CPU offers (:func:`resnet9.precision.cpu_capability`).

    Returns:
        ``git_commit``, ``git_dirty``, ``git_dirty_files`` (see :func:`git_state`),
        ``torch_version``, ``cuda_version`` (torch's CUDA build, None for a CPU build),
        ``cudnn_version`` (int or None), ``python_version``, ``platform``, ``device`` (``cpu``, ``mps``,
        ``cuda``, or ``cuda:<i>`` when the run claimed GPU i of several: resnet9/runtime.py),
        ``device_name``, ``torch_threads`` (intra-op CPU threads), ``precision``, ``cpu``,
        ``dataset_sha256``, ``params``,
        ``train_seconds`` (float, s) and ``date`` (UTC, ISO 8601, seconds).
    """
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        **git_state(cwd),
        "torch_version": str(torch.__version__),  # a str subclass torch.load refuses
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn,
        "python_version": platform.python_version(),
        "platform": f"{sys.platform} {platform.machine()}",
        "device": str(device),  # cuda:<i> when this run claimed GPU i of several
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "precision": precision,
        "cpu": cpu,
        "dataset_sha256": dataset_sha256,
        "params": params,
        "train_seconds": float(train_seconds),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
