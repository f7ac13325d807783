"""The LR range test (Smith 2015, "Cyclical Learning Rates", sec. 3.3) with torch-lr-finder,
and the rule that turns its curve into ``max_lr``.

The test trains a fresh network for ``num_iter`` batches while the LR grows exponentially from
``start_lr`` to ``end_lr``, recording the exponentially smoothed loss (torch-lr-finder's
``smooth_f=0.05``) and stopping once the loss exceeds 5x its best.

Pick rules (``lr_find.rule``):

- ``steepest``: the LR where the smoothed loss falls fastest per decade of LR,
  ``argmin d loss / d log10(lr)``, searched before the loss minimum (after it the curve is
  diverging, not descending). This is torch-lr-finder's ``suggest_lr`` idea on a log axis.
- ``min_loss_fraction``: ``fraction`` x the LR of the lowest smoothed loss (fast.ai's
  "one order of magnitude before the minimum" with fraction 0.1).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_lr_finder import LRFinder
from torch_lr_finder.lr_finder import TrainDataLoaderIter

from resnet9 import PipelineError
from resnet9.precision import Precision


@dataclass(frozen=True)
class LrPick:
    """The chosen ``max_lr`` and the curve's landmarks; learning rates, unitless."""

    max_lr: float
    rule: str
    steepest_lr: float
    min_loss_lr: float


def range_test(model: nn.Module, optimizer: torch.optim.Optimizer, criterion, loader,
               device: torch.device, start_lr: float, end_lr: float, num_iter: int,
               step_mode: str, precision: Precision | None = None, smooth_f: float = 0.05,
               diverge_th: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Run torch-lr-finder's range test; return ``(lrs, smoothed losses)`` as float64 arrays.

    ``smooth_f`` and ``diverge_th`` are torch-lr-finder's: the losses are an exponential moving
    average with weight ``smooth_f`` on the newest batch (0 = the raw batch losses), and the test
    stops once that loss exceeds ``diverge_th`` x its lowest value.

    ``loader`` is a DataLoader or any re-iterable of ``(x, y)`` batches. The forward pass runs
    under ``precision`` as training does (torch-lr-finder's ``torch.amp`` backend, with the
    precision's GradScaler); fp32 when None. The model and optimizer are restored to their
    initial state afterwards.
    """
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


def pick_max_lr(lrs: np.ndarray, losses: np.ndarray, rule: str, fraction: float = 0.1) -> LrPick:
    """Apply ``rule`` (``steepest`` or ``min_loss_fraction``) to a range-test curve.

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
    chosen = steepest_lr if rule == "steepest" else fraction * min_loss_lr
    return LrPick(max_lr=chosen, rule=rule, steepest_lr=steepest_lr, min_loss_lr=min_loss_lr)
