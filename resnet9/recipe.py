"""The training recipe, from validated params to torch objects: network, Adam, EMA, loss, the
LR used, and the model file.

Shared by the lr_find, train, evaluate and analyze stages so that the LR range test sees the
same network, optimizer and loss as training does (the batches come from
:mod:`resnet9.loaders`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from resnet9 import PipelineError, artifacts, cifar10, params
from resnet9.model import INPUT_SIZE, ResNet9, ResNet9Config
from resnet9.params import ModelParams, ParamsError, RecipeParams, TrainParams
from resnet9.paths import LR_FIND_METRICS

SUGGESTED_MAX_LR = "suggested_max_lr"  # the LR range test's pick, a key of LR_FIND_METRICS


def build_model(model_params: ModelParams, device: torch.device) -> ResNet9:
    """A freshly initialised ResNet-9 of the configured width, on ``device``, channels_last."""
    net = ResNet9(ResNet9Config(width_multiplier=model_params.width_multiplier))
    return net.to(device, memory_format=torch.channels_last)


def optimizer(model: nn.Module, lr: float, recipe: RecipeParams) -> torch.optim.Adam:
    """``torch.optim.Adam`` at learning rate ``lr`` with ``recipe.weight_decay`` (L2).

    With ``recipe.decay_bn_and_bias`` false the 1-D parameters (BatchNorm scales and shifts,
    the FC bias) get no weight decay, as in Goyal et al. 2017 and airbench.
    """
    decay = recipe.weight_decay
    if recipe.decay_bn_and_bias or decay == 0:
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=decay)
    params = list(model.parameters())
    return torch.optim.Adam([
        {"params": [p for p in params if p.ndim > 1], "weight_decay": decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ], lr=lr)


def ema(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights and BN buffers, or None if decay is 0.

    torch's ``AveragedModel``; after the n-th update ``ema = d * ema + (1 - d) * weights`` with
    ``d = min(decay, (1 + n) / (10 + n))``, the ``num_updates`` warm-up of TensorFlow's
    ``tf.train.ExponentialMovingAverage``. The warm-up keeps a short run from being dominated by
    the initial weights; at decay 0.99 it ends after 890 updates (9 epochs of the spec run), and
    the weights it shaped count less than 1e-6 at the end of a 24-epoch run.
    """
    if decay == 0:
        return None
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def warmed_up_ema(averaged: list[torch.Tensor], current: list[torch.Tensor],
                      num_averaged: torch.Tensor) -> None:
        if not torch.is_floating_point(averaged[0]):  # BN's num_batches_tracked: a count
            for a, c in zip(averaged, current):
                a.copy_(c)
            return
        # A tensor, not a Python float: no read-back from the device at each step.
        d = torch.clamp((1.0 + num_averaged) / (10.0 + num_averaged), max=decay)
        weight = (1 - d).to(averaged[0].dtype)
        for a, c in zip(averaged, current):
            a.lerp_(c, weight)

    return AveragedModel(model, multi_avg_fn=warmed_up_ema, use_buffers=True)


def criterion(recipe: RecipeParams) -> nn.CrossEntropyLoss:
    """CrossEntropyLoss (log-softmax + NLL) with the configured label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)


def resolve_max_lr(train_params: TrainParams, lr_find_metrics: Path = LR_FIND_METRICS) -> float:
    """``train.max_lr``, or the LR range test's pick (``suggested_max_lr``) when it is ``auto``.

    Raises:
        ParamsError: ``auto`` but ``metrics/lr_find.json`` is missing or has no
            ``suggested_max_lr``.
    """
    if train_params.max_lr != "auto":
        return float(train_params.max_lr)
    try:
        return float(artifacts.read_json(lr_find_metrics)[SUGGESTED_MAX_LR])
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise ParamsError(
            f"train.max_lr: 'auto' needs the LR range test's result in {lr_find_metrics} "
            f"({type(err).__name__}: {err}); run `dvc repro lr_find` or set a number"
        ) from None


def max_lr_source(train_params: TrainParams) -> str:
    """Where the LR that :func:`resolve_max_lr` returns came from, as a phrase for messages."""
    if train_params.max_lr == "auto":
        return f"the LR range test's pick ({LR_FIND_METRICS}, train.max_lr: auto)"
    return "train.max_lr in params.yaml"


# A run whose test top-1 is at most this multiple of chance (1 / 10 classes) did not learn: 15%
# on CIFAR-10, where a tiny run that learned a little ends near 18%.
LEARNED_OVER_CHANCE = 1.5


def learned_threshold() -> float:
    """The test top-1 (a fraction) a run must beat to count as having learned."""
    return LEARNED_OVER_CHANCE / cifar10.NUM_CLASSES


def learned(test_acc: float) -> bool:
    """Whether a test top-1 ``test_acc`` (a fraction in [0, 1]) beats :func:`learned_threshold`."""
    return test_acc > learned_threshold()


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
    (CPU tensors), ``model_params`` (``{"width_multiplier": float}``), ``classes`` (10 names in
    label order), ``normalization`` (``{"mean": [3 floats], "std": [3 floats]}``, RGB, on the
    [0, 1] pixel scale), ``input_size`` (``[H, W]`` = ``[32, 32]``), and ``extra`` (params,
    provenance, timings).
    """
    return artifacts.save_torch(path, {
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
        saved = artifacts.load_torch(path)
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
        model_params = params.parse("model", saved["model_params"])
        net = build_model(model_params, device)
        net.load_state_dict(saved["state_dict"])
    except (ParamsError, RuntimeError, TypeError, AttributeError) as err:
        raise ModelFileError(f"{path}: its weights do not fit the ResNet-9 it describes "
                             f"({_first_line(err)}); {MODEL_FILE_HINT}") from None
    return net.eval(), saved
