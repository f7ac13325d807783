"""What a finished training run writes, in one call (:func:`write`): the model file, the LR
schedule, the provenance and ``metrics/train.json`` (paths: :mod:`resnet9.paths`), and the
lines that say how the run went.

The progress files (``plots/train_history.csv``, DVCLive's summary) are written after every
epoch by :mod:`resnet9.live`; :func:`write` only closes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from resnet9 import atomic_io, checkpoint, engine, lr_range, model_file, precision, provenance
from resnet9.engine import FitResult, TrainLoop
from resnet9.live import LiveLog
from resnet9.params import ModelParams, RecipeParams, TrainParams
from resnet9.paths import (LR_SCHEDULE, MODEL_FILE, PROVENANCE_FILE, TRAIN_HISTORY,
                           TRAIN_METRICS)


def write(loop: TrainLoop, result: FitResult, *, model_p: ModelParams, recipe_p: RecipeParams,
          train_p: TrainParams, max_lr: float, images: int, wall_seconds: float,
          run_params: dict, dataset_sha256: dict, stage_seconds: dict[str, float],
          progress: LiveLog, checkpoint_file: Path | None) -> None:
    """Write the outputs of the run ``result`` of ``loop`` at peak LR ``max_lr``, close
    ``progress``, delete ``checkpoint_file`` (the run is complete: nothing left to resume), and
    print the run's test accuracy and speed; one no better than chance also warns on stderr.

    ``images`` is the number of training images in one epoch, all processes together;
    ``wall_seconds`` the time :func:`resnet9.engine.fit` took in this process (not a resumed
    run's earlier epochs); ``run_params`` params.yaml as the run read it; ``dataset_sha256``
    the dataset's checksums (``meta.json``); ``stage_seconds`` where the stage's time went so
    far (``runner.StageClock.seconds``).
    """
    seconds = sum(h.seconds for h in result.history)  # resumed epochs count once
    prov = provenance.collect(params=run_params, dataset_sha256=dataset_sha256,
                              train_seconds=seconds, device=loop.device,
                              precision=loop.precision.name, cpu=precision.cpu_capability())
    # In the provenance, not in metrics/train.json, whose six more columns would crowd
    # `dvc exp show`.
    prov["stage_seconds"] = stage_seconds
    model_file.save_trained(MODEL_FILE, loop.evaluated, model_p,
                            recipe_params=recipe_p.model_dump(),
                            train_params=train_p.model_dump(), max_lr=max_lr,
                            train_seconds=seconds, wall_seconds_this_run=wall_seconds,
                            provenance=prov)
    atomic_io.write_csv(LR_SCHEDULE,
                        pd.DataFrame({"step": range(len(result.lrs)), "lr": result.lrs}))
    last = result.history[-1]
    metrics = {  # metrics/train.json, built here only: the LRs this run used and how it went
        "max_lr": max_lr,
        "min_lr": max_lr / train_p.div_factor,  # LRMIN: the One Cycle policy's start and end
        "train_loss": last.train_loss,  # last epoch, mean cross-entropy per image
        "train_acc": last.train_acc,  # last epoch, top-1 fraction on augmented images
        "train_seconds": seconds,  # every epoch's wall time (training + test pass)
        "images_per_s": images * train_p.epochs / seconds,  # training images, all processes
        "learned": engine.learned(last.test_acc),  # false: no better than 1.5x chance
    }
    atomic_io.write_json(PROVENANCE_FILE, prov)  # the same as model.pt's (predict --info)
    progress.close()  # plots/train_history.csv: written after every epoch
    if checkpoint_file is not None:
        checkpoint.discard(checkpoint_file)
    atomic_io.write_json(TRAIN_METRICS, metrics)
    if not metrics["learned"]:
        print(f"train: warning: test accuracy {last.test_acc:.4f} is no better than "
              f"{engine.LEARNED_OVER_CHANCE:g}x chance ({engine.learned_threshold():.2f}): the "
              f"run did not learn; max_lr {max_lr:.4g} is {lr_range.max_lr_source(train_p)}",
              file=sys.stderr)
    print(f"train: test accuracy {last.test_acc:.4f} after {train_p.epochs} epochs in "
          f"{seconds:.1f} s ({metrics['images_per_s']:.0f} images/s); wrote {MODEL_FILE}, "
          f"{TRAIN_METRICS}, {PROVENANCE_FILE}, {TRAIN_HISTORY}, {LR_SCHEDULE}")
