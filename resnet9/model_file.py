"""The model file (``data/model.pt``): what the train stage writes and everything else reads.

A dict saved with ``torch.save`` holding the weights and all that using them needs (classes,
normalization, width, input size), so that predict, export and the app need neither the
dataset nor params.yaml; :func:`info` is what a file says about itself (``predict --info``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from resnet9 import PipelineError, atomic_io, cifar10, params
from resnet9.model import INPUT_SIZE, ResNet9
from resnet9.params import ModelParams, ParamsError
from resnet9.recipe import build_model


class ModelFileError(PipelineError):
    """A model file is missing, unreadable (truncated, corrupt) or not one this package wrote."""


MODEL_FILE_HINT = "rerun `dvc repro train` to train it, or `dvc pull` to fetch it from the remote"
# What a model file must hold: the weights and everything needed to use them without the
# dataset or params.yaml (:func:`save_trained` writes them, :func:`load_model_file` checks them).
ZIP_MAGIC = b"PK\x03\x04"  # the first bytes of every file torch.save writes
MODEL_FILE_KEYS = ("state_dict", "model_params", "classes", "normalization", "input_size")


def save_trained(path: Path | str, net: nn.Module, model_params: ModelParams, **extra) -> Path:
    """Write the trained ``net`` to ``path`` (atomically) with what using it needs.

    The file is a dict (``torch.save``, loadable with ``weights_only=True``): ``state_dict``
    (CPU tensors), ``model_params`` (``{"width_multiplier": float, "logit_scale": float}``),
    ``classes`` (10 names in label order), ``normalization`` (``{"mean": [3 floats], "std":
    [3 floats]}``, RGB, on the [0, 1] pixel scale), ``input_size`` (``[H, W]`` = ``[32, 32]``),
    and ``extra`` (params, provenance, timings).
    """
    return atomic_io.save_torch(path, {
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "model_params": model_params.model_dump(),
        "classes": list(cifar10.CLASSES),
        "normalization": {"mean": list(cifar10.MEAN), "std": list(cifar10.STD)},
        "input_size": list(INPUT_SIZE),
        **extra,
    })


def _first_line(err: BaseException, limit: int = 120) -> str:
    """``Type: first sentence of the message`` of ``err``, at most ``limit`` characters."""
    text = (str(err).strip().splitlines() or [""])[0].split(". ")[0]
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def load_model_file(path: Path | str) -> dict:
    """The dict a train stage wrote to ``path``, checked to hold :data:`MODEL_FILE_KEYS`.

    Raises:
        ModelFileError: one line naming ``path``, what is wrong (missing; truncated or corrupt;
            not this package's model file) and what to do (:data:`MODEL_FILE_HINT`).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: not found; {MODEL_FILE_HINT}")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head.startswith(ZIP_MAGIC):  # torch.save's format since torch 1.6 is a zip archive
        raise ModelFileError(f"{path}: not a model file (torch.save writes a zip archive; this "
                             f"file starts with {head!r}); {MODEL_FILE_HINT}")
    try:
        saved = atomic_io.load_torch(path)
    except Exception as err:  # torch.load: RuntimeError, UnpicklingError, EOFError, OSError...
        raise ModelFileError(f"{path}: not a readable model file, truncated or corrupt "
                             f"({_first_line(err)}); {MODEL_FILE_HINT}") from None
    if not isinstance(saved, dict):
        raise ModelFileError(f"{path}: holds a {type(saved).__name__}, not a ResNet-9 model file "
                             f"of this package (a dict with {', '.join(MODEL_FILE_KEYS)}); "
                             f"{MODEL_FILE_HINT}")
    missing = [k for k in MODEL_FILE_KEYS if k not in saved]
    if missing:
        raise ModelFileError(f"{path}: not a ResNet-9 model file of this package, or one from an "
                             f"older version (keys {missing} missing; expected "
                             f"{', '.join(MODEL_FILE_KEYS)}); {MODEL_FILE_HINT}")
    return saved


def load_trained(path: Path | str, device: torch.device) -> tuple[ResNet9, dict]:
    """The trained network from a model file (``data/model.pt``) in eval mode on ``device``,
    and the file's dict (see :func:`save_trained`).

    Raises:
        ModelFileError: the file is missing, unreadable or foreign (:func:`load_model_file`), or
            its weights do not fit the ResNet-9 its ``model_params`` describe.
    """
    saved = load_model_file(path)
    try:
        # files saved before model.logit_scale existed had none: 1.0
        model_params = params.parse("model", {"logit_scale": 1.0, **saved["model_params"]})
        net = build_model(model_params, device)
        net.load_state_dict(saved["state_dict"])
    except (ParamsError, RuntimeError, TypeError, AttributeError) as err:
        raise ModelFileError(f"{path}: its weights do not fit the ResNet-9 it describes "
                             f"({_first_line(err)}); {MODEL_FILE_HINT}") from None
    return net.eval(), saved


def info(path: Path | str) -> dict:
    """What a model file says about itself: the file (path, bytes, md5 as in ``dvc.lock``),
    classes, width multiplier, input size, normalization, and the provenance the train stage
    recorded (None for a file written before provenance was recorded).

    Raises:
        ModelFileError: the file is missing, unreadable or foreign, or its weights do not fit
            the network it describes (:func:`load_trained`).
    """
    path = Path(path)
    _, saved = load_trained(path, torch.device("cpu"))  # the weights must load too
    return {
        "file": {"path": str(path), "bytes": path.stat().st_size,
                 "md5": hashlib.md5(path.read_bytes()).hexdigest()},
        "classes": list(saved["classes"]),
        "width_multiplier": saved["model_params"].get("width_multiplier"),
        "input_size": list(saved["input_size"]),
        "normalization": saved["normalization"],
        "max_lr": saved.get("max_lr"),
        "provenance": saved.get("provenance"),
    }
