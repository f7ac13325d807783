"""The LR range test (Smith 2015, "Cyclical Learning Rates", sec. 3.3) with torch-lr-finder,
the rule that turns its curve into ``max_lr``, and how train reads that pick
(:data:`SUGGESTED_MAX_LR` in ``metrics/lr_find.json``: :func:`resolve_max_lr`).

Three names for one thing, each given by its owner: ``lr_find`` is the DVC stage (its params
section, outputs and ``dvc repro lr_find``; fast.ai's word), ``lr_range`` this module, named
for the test it runs (Smith's "LR range test"), and ``LRFinder`` the class of the
torch-lr-finder library that runs it.

The test trains a fresh network for ``num_iter`` batches while the LR grows exponentially from
``start_lr`` to ``end_lr``, recording the exponentially smoothed loss (``lr_find.smooth_f``,
the weight of the newest batch loss; torch-lr-finder's default is 0.05) and stopping once the
loss exceeds 5x its best.

Pick rules (``lr_find.rule``), each applied to the smoothed curve (averaged over
``lr_find.repeats`` tests when more than one); ``max_lr`` is ``lr_find.factor`` x the LR the
rule finds:

- ``steepest``: the LR where the smoothed loss falls fastest per decade of LR,
  ``argmin d loss / d log10(lr)``, searched before the loss minimum (after it the curve is
  diverging, not descending). This is torch-lr-finder's ``suggest_lr`` idea on a log axis.
- ``min_loss_fraction``: the LR of the lowest smoothed loss (with factor 0.1, fast.ai's "one
  order of magnitude before the minimum").
- ``valley``: fastai's default suggestion (``valley`` in fastai's ``callback/schedule.py``):
  the longest run of decreasing losses, not necessarily adjacent, and the point half-way along
  it; fastai leaves out the first tenth of the test and its last 5 points first.
"""

from __future__ import annotations

import contextlib
import io
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from resnet9 import PipelineError, atomic_io
from resnet9.params import LrFindParams, ParamsError, TrainParams
from resnet9.paths import LR_FIND_METRICS
from resnet9.precision import Precision


SUGGESTED_MAX_LR = "suggested_max_lr"  # the LR range test's pick, a key of LR_FIND_METRICS
RULES = typing.get_args(LrFindParams.model_fields["rule"].annotation)  # one list: params.py
SMOOTH_F = 0.05  # torch-lr-finder's default smoothing weight of the newest batch loss
DIVERGE_TH = 5.0  # torch-lr-finder's default: stop once the smoothed loss is 5x its lowest


@dataclass(frozen=True)
class LrPick:
    """The chosen ``max_lr`` and the curve's landmarks; learning rates, unitless."""

    max_lr: float
    rule: str
    steepest_lr: float
    min_loss_lr: float


def range_test(model: nn.Module, optimizer: torch.optim.Optimizer, criterion, loader,
               device: torch.device, start_lr: float, end_lr: float, num_iter: int,
               step_mode: str, precision: Precision | None = None,
               smooth_f: float = SMOOTH_F, diverge_th: float = DIVERGE_TH
               ) -> tuple[np.ndarray, np.ndarray]:
    """Run torch-lr-finder's range test; return ``(lrs, smoothed losses)`` as float64 arrays.

    ``smooth_f`` and ``diverge_th`` are torch-lr-finder's: the losses are an exponential moving
    average with weight ``smooth_f`` on the newest batch (0 = the raw batch losses), and the test
    stops once that loss exceeds ``diverge_th`` x its lowest value.

    ``loader`` is a DataLoader or any re-iterable of ``(x, y)`` batches. The forward pass runs
    under ``precision`` as training does (torch-lr-finder's ``torch.amp`` backend, with the
    precision's GradScaler); fp32 when None. The model and optimizer are restored to their
    initial state afterwards.
    """
    # Imported here: the train stage reads this module's result contract without the range
    # test, and torch-lr-finder imports matplotlib.
    from torch_lr_finder import LRFinder
    from torch_lr_finder.lr_finder import TrainDataLoaderIter

    if not isinstance(loader, torch.utils.data.DataLoader):  # e.g. a DeviceLoader
        loader = TrainDataLoaderIter(loader)
    amp = {}
    if precision is not None and precision.name != "fp32":
        amp = dict(amp_backend="torch", grad_scaler=precision.scaler,
                   amp_config={"device_type": precision.device_type, "dtype": precision.dtype})
    finder = LRFinder(model, optimizer, criterion, device=device, **amp)
    with contextlib.redirect_stdout(io.StringIO()):  # its "See the graph with LRFinder.plot()"
        finder.range_test(loader, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter,
                          step_mode=step_mode, smooth_f=smooth_f, diverge_th=diverge_th)
    finder.reset()
    return np.asarray(finder.history["lr"], float), np.asarray(finder.history["loss"], float)


def smooth(raw: np.ndarray, smooth_f: float = SMOOTH_F, diverge_th: float = DIVERGE_TH
           ) -> np.ndarray:
    """torch-lr-finder's smoothing and stop replayed on raw batch losses (1-D float64): the
    exponential moving average ``s[i] = f * raw[i] + (1 - f) * s[i-1]``, ``s[0] = raw[0]``, up to
    and including the first point above ``diverge_th`` x the lowest point so far. Equal to what
    :func:`range_test` returns with the same settings."""
    out = []
    for i, loss in enumerate(np.asarray(raw, float)):
        value = loss if i == 0 else smooth_f * loss + (1 - smooth_f) * out[-1]
        out.append(value)
        if value > diverge_th * min(out):
            break
    return np.asarray(out)


def repeat_seeds(seed: int, repeats: int) -> list[int]:
    """The seeds of ``repeats`` range tests for ``recipe.seed`` = ``seed``: ``seed`` itself first
    (so one test is the run it always was), then seeds no other ``recipe.seed`` below 1,000,000
    uses, so that the tests of two seeds share no curve."""
    return [seed + 1_000_000 * r for r in range(repeats)]


def average_curves(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The mean of several range tests' ``(lrs, losses)`` over the steps all of them reached.

    The tests must share one LR schedule (same start, end, steps and mode).

    Raises:
        ValueError: the curves' LRs differ on their common steps.
    """
    n = min(len(lrs) for lrs, _ in curves)
    lrs = curves[0][0][:n]
    if any(not np.allclose(other[:n], lrs) for other, _ in curves[1:]):
        raise ValueError("range tests with different LR schedules cannot be averaged")
    return lrs, np.mean([losses[:n] for _, losses in curves], axis=0)


def valley_index(losses: np.ndarray) -> int:
    """The index fastai's ``valley`` suggests (fastai ``callback/schedule.py``, the default of
    its ``Learner.lr_find`` since fastai 2.4).

    The valley is the longest strictly decreasing subsequence of ``losses`` (its points need
    not be adjacent); with ``start`` the index before its first point and ``end`` its last, the
    pick is ``start + int(len / 3) + int(len / 6)``, ``len = end - start``: about half-way down.
    """
    n = len(losses)
    longest = np.ones(n, int)  # longest[i]: the longest decreasing subsequence ending at i
    for i in range(1, n):
        before = longest[:i][losses[:i] > losses[i]]
        if len(before):
            longest[i] = before.max() + 1
    end = int(np.argmax(longest))  # the first index holding the maximum, as fastai's loop
    start = end - int(longest[end])
    sections = (end - start) / 3
    return start + int(sections) + int(sections / 2)


def pick_max_lr(lrs: np.ndarray, losses: np.ndarray, rule: str, factor: float = 1.0) -> LrPick:
    """Apply ``rule`` (one of :data:`RULES`) to a range-test curve of smoothed losses; ``max_lr``
    is ``factor`` x the LR the rule finds.

    Raises:
        PipelineError: fewer than 5 finite points, so no rule can be applied.
    """
    ok = np.isfinite(losses) & (lrs > 0)
    lrs, losses = lrs[ok], losses[ok]
    if len(lrs) < 5:
        raise PipelineError(
            f"LR range test: only {len(lrs)} usable points; raise lr_find.num_iter or lower "
            "lr_find.start_lr"
        )
    lowest = int(np.argmin(losses))
    slope = np.gradient(losses, np.log10(lrs))
    search = slice(0, max(lowest, 2))  # descending part of the curve
    steepest = int(np.argmin(slope[search]))
    steepest_lr, min_loss_lr = float(lrs[steepest]), float(lrs[lowest])
    if rule == "steepest":
        chosen = steepest_lr
    elif rule == "min_loss_fraction":
        chosen = min_loss_lr
    elif rule == "valley":  # on fastai's part of the curve: not the first tenth, not the last 5
        first = len(lrs) // 10
        kept = slice(first, max(len(lrs) - 5, first + 5))
        chosen = float(lrs[kept][valley_index(losses[kept])])
    else:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    return LrPick(max_lr=factor * chosen, rule=rule, steepest_lr=steepest_lr,
                  min_loss_lr=min_loss_lr)


def resolve_max_lr(train_params: TrainParams, lr_find_metrics: Path = LR_FIND_METRICS) -> float:
    """``train.max_lr``, or the LR range test's pick (:data:`SUGGESTED_MAX_LR`) when it is
    ``auto``.

    Raises:
        ParamsError: ``auto`` but ``metrics/lr_find.json`` is missing or has no
            ``suggested_max_lr``.
    """
    if train_params.max_lr != "auto":
        return float(train_params.max_lr)
    try:
        return float(atomic_io.read_json(lr_find_metrics)[SUGGESTED_MAX_LR])
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
