"""Typed, validated sections of ``params.yaml``.

Every stage calls :func:`load` for the sections it reads *before* doing any work, so a bad
value stops the stage with one line naming the key, the value and what is allowed, and no
output is touched.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import yaml

from resnet9 import PipelineError

PARAMS_FILE = Path("params.yaml")


class ParamsError(PipelineError):
    """A key of ``params.yaml`` is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Rule:
    """What a key accepts: ``check(value)`` is True for allowed values; ``allowed`` says so in words."""

    allowed: str
    check: Callable[[Any], bool]
    convert: Callable[[Any], Any] = lambda v: v  # applied before check


def _yaml11_float(v: Any) -> Any:
    """PyYAML reads ``1e-3`` (no dot) as a string; read it as the number a user meant."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def integer(lo: int, hi: int | None = None, *, null: bool = False, auto: bool = False) -> Rule:
    """An integer in ``[lo, hi]``, optionally also ``null`` or the string ``auto``."""
    text = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
    extras = [w for w, on in (("null", null), ("'auto'", auto)) if on]
    return Rule(
        " or ".join([text, *extras]),
        lambda v: (null and v is None)
        or (auto and v == "auto")
        or (_is_int(v) and v >= lo and (hi is None or v <= hi)),
    )


def number(lo: float, hi: float | None = None, *, lo_open=False, hi_open=False, auto=False) -> Rule:
    """A finite number in the interval from ``lo`` to ``hi`` (open or closed ends), or ``auto``."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    text = f"a number in {left}{lo}, {'inf' if hi is None else hi}{right}"

    def check(v):
        if auto and v == "auto":
            return True
        if not _is_num(v):
            return False
        above = v > lo if lo_open else v >= lo
        below = hi is None or (v < hi if hi_open else v <= hi)
        return above and below

    convert = lambda v: v if v == "auto" else _yaml11_float(v)  # noqa: E731
    return Rule(text + (" or 'auto'" if auto else ""), check, convert)


def choice(*values: Any) -> Rule:
    """One of ``values`` (compared with ``==``; booleans only match booleans)."""
    return Rule(
        "one of " + ", ".join(repr(v) for v in values),
        lambda v: any(v == c and type(v) is type(c) for c in values),
    )


def text() -> Rule:
    """A non-empty string."""
    return Rule("a non-empty string", lambda v: isinstance(v, str) and v.strip() != "")


def _key(rule: Rule, default: Any = dataclasses.MISSING):
    return dataclasses.field(default=default, metadata={"rule": rule})


URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


@dataclass(frozen=True)
class DataParams:
    """``data``: where CIFAR-10 comes from and which part of it the pipeline uses."""

    source: str = _key(text(), URL)  # URL, path to the official .tar.gz, or a Keras-layout .npz
    train_subset: int | None = _key(integer(10, 50_000, null=True), None)  # class-stratified
    test_subset: int | None = _key(integer(10, 10_000, null=True), None)
    seed: int = _key(integer(0), 0)  # seeds the subset draw


@dataclass(frozen=True)
class ModelParams:
    """``model``: 1.0 is the spec network (64-128-256-512 channels, 6,573,130 parameters)."""

    width_multiplier: float = _key(number(0, 8, lo_open=True), 1.0)


@dataclass(frozen=True)
class LrFindParams:
    """``lr_find``: the LR range test (Smith 2015, torch-lr-finder) and the rule picking max_lr."""

    start_lr: float = _key(number(0, 1, lo_open=True), 1e-7)
    end_lr: float = _key(number(0, 100, lo_open=True), 10.0)
    num_iter: int = _key(integer(5, 100_000), 100)
    step_mode: str = _key(choice("exp", "linear"), "exp")
    rule: str = _key(choice("steepest", "min_loss_fraction"), "steepest")
    fraction: float = _key(number(0, 1, lo_open=True), 0.1)  # for rule min_loss_fraction

    def __post_init__(self):
        if self.end_lr <= self.start_lr:
            raise ParamsError(
                f"lr_find.end_lr: {self.end_lr!r} is not allowed; expected a number greater "
                f"than lr_find.start_lr ({self.start_lr!r})"
            )


@dataclass(frozen=True)
class TrainParams:
    """``train``: Adam + CrossEntropyLoss under the One Cycle policy (Smith & Topin 2017)."""

    epochs: int = _key(integer(1, 1000), 24)
    batch_size: int = _key(integer(1, 50_000), 512)
    max_lr: float | str = _key(number(0, 100, lo_open=True, auto=True), "auto")
    peak_epoch: float = _key(number(0, 1000, lo_open=True), 5)
    div_factor: float = _key(number(1, 1e6), 10.0)  # LRMIN = max_lr / div_factor
    weight_decay: float = _key(number(0, 1), 0.0)
    decay_bn_and_bias: bool = _key(choice(True, False), True)  # False: no decay on BN / biases
    ema_decay: float = _key(number(0, 1, hi_open=True), 0.0)  # 0 = off; else EMA of the weights
    label_smoothing: float = _key(number(0, 1, hi_open=True), 0.0)
    seed: int = _key(integer(0), 0)
    device: str = _key(choice("auto", "cpu", "cuda", "mps"), "auto")
    # auto: bf16 autocast on CUDA capability >= 8.0, fp16 + GradScaler on older GPUs, else fp32
    precision: str = _key(choice("auto", "bf16", "fp16", "fp32"), "auto")
    num_workers: int | str = _key(integer(0, 64, auto=True), "auto")
    pad_mode: str = _key(choice("reflect", "zero"), "reflect")  # padding before the crop
    # albumentations in a DataLoader, or the same augmentation as batched tensor ops on the
    # device with the dataset resident there; auto = torch on CUDA, albumentations elsewhere
    augment_backend: str = _key(choice("auto", "albumentations", "torch"), "auto")
    compile: bool = _key(choice(False, True), False)  # torch.compile the network
    # > 1: DistributedDataParallel under torchrun, one process per GPU (or CPU, with gloo)
    nproc_per_node: int = _key(integer(1, 64), 1)

    def __post_init__(self):
        if self.batch_size < self.nproc_per_node:
            raise ParamsError(
                f"train.batch_size: {self.batch_size} is not allowed; expected at least "
                f"train.nproc_per_node ({self.nproc_per_node}), one image per process"
            )
        if self.peak_epoch >= self.epochs:
            raise ParamsError(
                f"train.peak_epoch: {self.peak_epoch!r} is not allowed; expected a number "
                f"below train.epochs ({self.epochs})"
            )


@dataclass(frozen=True)
class EvaluateParams:
    """``evaluate``: test-set evaluation."""

    tta: bool = _key(choice(False, True), False)  # also report flip-TTA accuracy (Page 2018)


@dataclass(frozen=True)
class AnalyzeParams:
    """``analyze``: figures for people."""

    num_misclassified: int = _key(integer(1, 100), 20)
    gradcam_layer: str = _key(choice("prep", "layer1", "layer2", "layer3"), "layer3")


SECTIONS = {
    "data": DataParams,
    "model": ModelParams,
    "lr_find": LrFindParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "analyze": AnalyzeParams,
}


def parse(name: str, raw: Any):
    """Validate the mapping ``raw`` as section ``name`` and return its dataclass.

    Raises:
        ParamsError: unknown section or key, missing key, wrong type or out-of-range value.
    """
    cls = SECTIONS.get(name)
    if cls is None:
        raise ParamsError(f"{name}: unknown params section; expected one of {', '.join(SECTIONS)}")
    if not isinstance(raw, dict):
        raise ParamsError(f"{name}: {raw!r} is not allowed; expected a mapping of keys")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ParamsError(
                f"{name}.{key}: unknown key; expected one of {', '.join(known)}"
            )
    values = {}
    for key, f in known.items():
        if key not in raw:
            raise ParamsError(f"{name}.{key}: missing; expected {f.metadata['rule'].allowed}")
        rule: Rule = f.metadata["rule"]
        value = rule.convert(raw[key])
        if not rule.check(value):
            raise ParamsError(f"{name}.{key}: {value!r} is not allowed; expected {rule.allowed}")
        values[key] = value
    return cls(**values)


def load(*names: str, path: Path | str = PARAMS_FILE):
    """Read ``path`` and return the validated sections ``names``, in order.

    Raises:
        ParamsError: the file is missing or not YAML, a section is missing, or any key is bad.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run the stage from the repository root") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(doc, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, found {type(doc).__name__}")
    out = []
    for name in names:
        if name not in doc:
            raise ParamsError(f"{path}: section '{name}' is missing")
        out.append(parse(name, doc[name]))
    return out[0] if len(out) == 1 else tuple(out)


def defaults(name: str) -> dict:
    """The default values of section ``name`` as a plain dict (what ``params.yaml`` ships)."""
    return {f.name: f.default for f in fields(SECTIONS[name])}
