"""Follow a run while it trains: after every epoch, the history so far and the latest epoch go
to disk, where DVC's tools (and DVC Studio, through DVCLive) read them while the run goes on.

- :data:`resnet9.paths.TRAIN_HISTORY`: every epoch so far, one row each (the columns of
  :class:`resnet9.engine.EpochStats`), rewritten atomically after each epoch; the one per-epoch
  history (dvc.yaml's plots, the analyze stage).
- :data:`resnet9.paths.LIVE_METRICS`: DVCLive's summary of the latest epoch (``step``, 1-based,
  ``train.loss``, ``train.acc``, ``test.loss``, ``test.acc``, ``lr``, ``seconds``), a metric of
  the train stage; a completed run keeps only ``step``.

DVCLive runs with ``dvcyaml=False``, ``save_dvc_exp=False``, ``report=None`` and logs with
``plot=False``; why, and what reaches DVC Studio: docs/live.md.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pandas as pd

from resnet9 import atomic_io
from resnet9.engine import EpochStats, FitResult
from resnet9.paths import LIVE_DIR, LIVE_METRICS, TRAIN_HISTORY


def history_frame(result: FitResult) -> pd.DataFrame:
    """``result.history`` as a table: one row per epoch, the fields of ``EpochStats``."""
    return pd.DataFrame([dataclasses.asdict(h) for h in result.history],
                        columns=[f.name for f in dataclasses.fields(EpochStats)])


class LiveLog:
    """An epoch-end callback of :func:`resnet9.engine.fit` that writes the run's progress after
    every epoch: :data:`resnet9.paths.TRAIN_HISTORY` (all epochs so far) and DVCLive's summary
    of the latest epoch, with DVCLive's ``step`` set to the epoch number (1-based).

    Resume-aware: given the ``FitResult`` a resumed run starts from (``resumed``, as
    :func:`resnet9.checkpoint.resume` returns it), it writes both files for the epochs already
    done at once (DVC deletes a stage's outputs before it runs the stage) and the step count
    goes on from there instead of starting over. Make one on rank 0 only; call :meth:`close`
    when the run completes.

    Without dvclive installed (a GPU machine that has only PyTorch: scripts/gpu_measure.sh) it
    says so once and writes the summary as ``{"step": N}`` alone; the history is written as
    always.

    Raises:
        ValueError: a call whose ``epoch`` (0-based) is not the last epoch of ``result``.
    """

    def __init__(self, resumed: FitResult | None = None) -> None:
        self._step = 0
        try:
            from dvclive import Live  # imports part of DVC: only when a run starts
        except ImportError:
            print(f"train: dvclive is not installed: no live summary in {LIVE_METRICS} "
                  f"beyond the step; {TRAIN_HISTORY} is written after every epoch as always")
            self.live = None
        else:
            self.live = Live(dir=str(LIVE_DIR), resume=False, report=None, save_dvc_exp=False,
                             dvcyaml=False)
        if resumed is not None and resumed.history:
            atomic_io.write_csv(TRAIN_HISTORY, history_frame(resumed))
            self._log(resumed)
            self._write_summary()  # the files DVC removed; Studio hears from the next epoch

    @property
    def summary_file(self) -> Path:
        """DVCLive's summary of the latest epoch (a DVC metric in dvc.yaml)."""
        return Path(self.live.metrics_file) if self.live else LIVE_METRICS

    @property
    def step(self) -> int:
        """DVCLive's step: the number of the epoch last logged (0 before the first)."""
        return self.live.step if self.live else self._step

    def _write_summary(self) -> None:
        if self.live:
            self.live.make_summary()
        else:
            atomic_io.write_json(LIVE_METRICS, {"step": self._step})

    def _log(self, result: FitResult) -> None:
        last = result.history[-1]
        self._step = last.epoch
        if not self.live:
            return
        self.live.step = last.epoch
        for name, value in (("train/loss", last.train_loss), ("train/acc", last.train_acc),
                            ("test/loss", last.test_loss), ("test/acc", last.test_acc),
                            ("lr", last.lr), ("seconds", last.seconds)):
            self.live.log_metric(name, value, plot=False)  # the history is the CSV

    def __call__(self, epoch: int, result: FitResult) -> None:
        if not result.history or result.history[-1].epoch != epoch + 1:
            raise ValueError(f"epoch {epoch + 1} is not the last of the "
                             f"{len(result.history)} epochs in the result")
        atomic_io.write_csv(TRAIN_HISTORY, history_frame(result))
        self._log(result)
        if self.live:
            self.live.next_step()  # writes the summary, posts to Studio when configured
            self.live.step = result.history[-1].epoch  # next_step counted one on: undo
        else:
            self._write_summary()
        sys.stdout.flush()  # the epoch's line into a log file now (`dvc queue logs`)

    def close(self) -> None:
        """End DVCLive's run (``Live.end``: the last summary and the "done" event to Studio when
        configured), then cut the summary file down to ``{"step": <epochs done>}``, atomically:
        the completed run's figures are in metrics/train.json and metrics/evaluate.json."""
        if self.live:
            self.live.end()
        atomic_io.write_json(self.summary_file, {"step": self.step})
