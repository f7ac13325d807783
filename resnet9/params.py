"""Typed, validated sections of ``params.yaml``, as pydantic models.

``params.yaml`` is the one source of values: the models here declare what each key accepts and
hold no defaults. Every stage calls :func:`load` for the sections it reads *before* doing any
work, so a bad value stops the stage with one line naming the key, the value and what is
allowed (derived from the model's JSON schema, so the text cannot drift from the rule), and no
output is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic import model_validator

from resnet9 import PipelineError

PARAMS_FILE = Path("params.yaml")


class ParamsError(PipelineError):
    """A key of ``params.yaml`` is missing, unknown, of the wrong type or out of range."""


def _yaml11_float(v: Any) -> Any:
    """PyYAML reads ``1e-3`` (no dot) as a string; read it as the number a user meant."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


# A finite float; an int and PyYAML's string "1e-3" are read as numbers too.
Number = Annotated[float, BeforeValidator(_yaml11_float), Field(allow_inf_nan=False)]


Auto = Literal["auto"]
GRADCAM_LAYERS = ("prep", "layer1", "layer2", "layer3")  # ResNet9's blocks Grad-CAM can explain
DEVICES = ("auto", "cpu", "cuda", "mps")  # recipe.device, predict --device (resnet9/runtime.py)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # recipe.precision, predict --precision


class Section(BaseModel):
    """A params.yaml section: every key required, no unknown keys, no type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataParams(Section):
    """``data``: where CIFAR-10 comes from and which part of it the pipeline uses."""

    source: Annotated[str, Field(min_length=1)]  # URL, the official .tar.gz, or a Keras .npz
    train_subset: Annotated[int, Field(ge=10, le=50_000)] | None  # class-stratified; null = all
    test_subset: Annotated[int, Field(ge=10, le=10_000)] | None
    seed: Annotated[int, Field(ge=0)]  # seeds the subset draw


class ModelParams(Section):
    """``model``: 1.0 is the spec network (64-128-256-512 channels, 6,573,130 parameters)."""

    width_multiplier: Annotated[Number, Field(gt=0, le=8)]
    logit_scale: Annotated[Number, Field(gt=0, le=10)]  # logits x this before the loss


class LrFindParams(Section):
    """``lr_find``: the LR range test (Smith 2015, torch-lr-finder) and the rule picking max_lr."""

    start_lr: Annotated[Number, Field(gt=0, le=1)]
    end_lr: Annotated[Number, Field(gt=0, le=100)]
    num_iter: Annotated[int, Field(ge=5, le=100_000)]
    step_mode: Literal["exp", "linear"]
    rule: Literal["steepest", "min_loss_fraction", "valley"]  # resnet9/lr_range.py
    factor: Annotated[Number, Field(gt=0, le=100)]  # max_lr = factor x the rule's LR
    smooth_f: Annotated[Number, Field(ge=0, lt=1)]  # torch-lr-finder's loss smoothing weight
    repeats: Annotated[int, Field(ge=1, le=20)]  # range tests averaged before the rule

    @model_validator(mode="after")
    def _end_above_start(self):
        if self.end_lr <= self.start_lr:
            raise ValueError(
                f"lr_find.end_lr: {self.end_lr:g} is not allowed; expected a number greater "
                f"than lr_find.start_lr ({self.start_lr:g})")
        return self


class RecipeParams(Section):
    """``recipe``: what the LR range test shares with training, so that it probes the run that
    follows: the batches and their augmentation, the loss, Adam's weight decay, the seed and the
    hardware. lr_find and train depend on this section as a whole."""

    batch_size: Annotated[int, Field(ge=1, le=50_000)]
    optimizer: Literal["adam", "adamw"]  # adamw: decoupled weight decay (Loshchilov & Hutter)
    weight_decay: Annotated[Number, Field(ge=0, le=1)]
    decay_bn_and_bias: bool  # false: no decay on BN / biases
    label_smoothing: Annotated[Number, Field(ge=0, lt=1)]
    seed: Annotated[int, Field(ge=0)]
    device: Literal[DEVICES]
    # auto: bf16 autocast on CUDA capability >= 8.0 and on CPUs with native bf16 (AVX512-BF16
    # or AMX), fp16 + GradScaler on older GPUs, else fp32 (resnet9/precision.py)
    precision: Literal[PRECISIONS]
    num_workers: Annotated[int, Field(ge=0, le=64)] | Auto
    pad_mode: Literal["reflect", "zero"]  # padding before the crop
    # albumentations in a DataLoader, or the same augmentation as batched tensor ops on the
    # device with the dataset resident there; auto = torch on CUDA, albumentations elsewhere
    augment_backend: Literal["auto", "albumentations", "torch"]


class TrainParams(Section):
    """``train``: the train stage's own keys: the One Cycle policy (Smith & Topin 2017) over
    ``epochs``, the weight EMA, and how the steps run (compiled, distributed)."""

    epochs: Annotated[int, Field(ge=1, le=1000)]
    max_lr: Annotated[Number, Field(gt=0, le=100)] | Auto  # auto = the LR range test's suggestion
    peak_epoch: Annotated[Number, Field(gt=0, le=1000)]
    div_factor: Annotated[Number, Field(ge=1, le=1e6)]  # LRMIN = max_lr / div_factor
    ema_decay: Annotated[Number, Field(ge=0, lt=1)]  # 0 = off; else EMA of the weights
    compile: bool  # torch.compile the network
    # > 1: DistributedDataParallel under torchrun, one process per GPU (or CPU, with gloo)
    nproc_per_node: Annotated[int, Field(ge=1, le=64)]

    @model_validator(mode="after")
    def _peak_before_end(self):
        if self.peak_epoch >= self.epochs:
            raise ValueError(
                f"train.peak_epoch: {self.peak_epoch:g} is not allowed; expected a number "
                f"below train.epochs ({self.epochs})")
        return self


class EvaluateParams(Section):
    """``evaluate``: test-set evaluation."""

    tta: bool  # also report flip-TTA accuracy (Page 2018)


class AnalyzeParams(Section):
    """``analyze``: figures for people."""

    num_misclassified: Annotated[int, Field(ge=1, le=100)]
    gradcam_layer: Literal[GRADCAM_LAYERS]


SECTIONS: dict[str, type[Section]] = {
    "data": DataParams,
    "model": ModelParams,
    "lr_find": LrFindParams,
    "recipe": RecipeParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "analyze": AnalyzeParams,
}


def allowed(schema: dict) -> str:
    """What a JSON-schema fragment accepts, in words: ``an integer in [1, 1000] or null``."""
    if "anyOf" in schema:
        return " or ".join(allowed(s) for s in schema["anyOf"])
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "true or false"
    if kind == "string":
        return "a non-empty string" if schema.get("minLength") else "a string"
    text = {"integer": "an integer", "number": "a number"}.get(kind, str(kind))
    # Bounds appear as JSON Schema's names or, behind a validator, as pydantic's (ge, gt, ...).
    lo_open, hi_open = "exclusiveMinimum" in schema or "gt" in schema, \
        "exclusiveMaximum" in schema or "lt" in schema
    lo = next((schema[k] for k in ("minimum", "exclusiveMinimum", "ge", "gt") if k in schema), None)
    hi = next((schema[k] for k in ("maximum", "exclusiveMaximum", "le", "lt") if k in schema), None)
    if lo is not None and hi is not None:
        return f"{text} in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{text} {'>' if lo_open else '>='} {_num(lo)}"
    return text


def _num(v: float) -> str:
    """``50000`` -> ``50,000``; ``0.5`` stays ``0.5``."""
    return f"{int(v):,}" if float(v).is_integer() else repr(v)


def _one_line(name: str, cls: type[Section], raw: dict, err: ValidationError) -> str:
    """The first error of ``err`` as ``section.key: value is not allowed; expected ...``."""
    first = err.errors()[0]
    if not first["loc"]:  # a cross-key check: its message is already the full sentence
        return str(first["msg"]).removeprefix("Value error, ")
    key = first["loc"][0]
    if first["type"] == "extra_forbidden":
        return f"{name}.{key}: unknown key; expected one of {', '.join(cls.model_fields)}"
    rule = allowed(cls.model_json_schema()["properties"][key])
    if first["type"] == "missing":
        return f"{name}.{key}: missing; expected {rule}"
    return f"{name}.{key}: {raw[key]!r} is not allowed; expected {rule}"


# Keys renamed since a release, so that an older params.yaml (or experiment) gets told the new
# name rather than "missing" and "unknown key".
RENAMED = {("lr_find", "fraction"): "lr_find.factor (it scales the pick of every rule; "
                                    "0.1 with rule min_loss_fraction is the old behaviour)"}


def parse(name: str, raw: Any) -> Section:
    """Validate the mapping ``raw`` as section ``name`` and return its model.

    Raises:
        ParamsError: unknown section or key, a renamed key (:data:`RENAMED`), missing key, wrong
            type or out-of-range value.
    """
    cls = SECTIONS.get(name)
    if cls is None:
        raise ParamsError(f"{name}: unknown params section; expected one of {', '.join(SECTIONS)}")
    if not isinstance(raw, dict):
        raise ParamsError(f"{name}: {raw!r} is not allowed; expected a mapping of keys")
    for key in raw:
        if (name, key) in RENAMED:
            raise ParamsError(f"{name}.{key}: renamed; use {RENAMED[name, key]}")
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_one_line(name, cls, raw, err)) from None


def read(path: Path | str = PARAMS_FILE) -> dict:
    """The raw mapping of sections in ``path``, unvalidated.

    Raises:
        ParamsError: the file is missing or not YAML, or not a mapping.
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
    return doc


def _check_across(sections: dict[str, Section]) -> None:
    """The checks that span two sections, run when both are loaded.

    Raises:
        ParamsError: ``recipe.batch_size`` below ``train.nproc_per_node``.
    """
    recipe, train = sections.get("recipe"), sections.get("train")
    if recipe is not None and train is not None and recipe.batch_size < train.nproc_per_node:
        raise ParamsError(
            f"recipe.batch_size: {recipe.batch_size} is not allowed; expected at least "
            f"train.nproc_per_node ({train.nproc_per_node}), one image per process")


def validate(path: Path | str = PARAMS_FILE) -> dict[str, Section]:
    """Read ``path`` and validate every known section in it, those a stage reads and the others.

    Every stage calls this (through :func:`load`) before any work, so that the first stage a run
    executes refuses a bad value anywhere in the file. In the pipeline that is check_params, the
    first stage: ``dvc exp run -S train.epochs=abc`` stops there, before DVC deletes any stage's
    outputs and before the LR range test.

    Raises:
        ParamsError: the file is missing or not YAML, or any key of any section is bad.
    """
    doc = read(path)
    checked = {name: parse(name, raw) for name, raw in doc.items() if name in SECTIONS}
    _check_across(checked)
    return checked


def load(*names: str, path: Path | str = PARAMS_FILE):
    """The validated sections ``names`` of ``path``, in order, after :func:`validate` has checked
    the whole file.

    Raises:
        ParamsError: the file is missing or not YAML, a section is missing, or any key is bad.
    """
    doc = read(path)
    for name in names:
        if name not in doc:
            raise ParamsError(f"{path}: section '{name}' is missing")
    checked = validate(path)
    out = [checked[name] for name in names]
    return out[0] if len(names) == 1 else tuple(out)
