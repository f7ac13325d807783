"""Every file the pipeline writes, declared once, relative to the project root.

Stages write these paths and name them in their messages; tests read them from here; and
``tests/test_paths.py`` checks that each stage's outputs in dvc.yaml are exactly
:data:`STAGE_OUTPUTS` (DVC cannot import Python, so dvc.yaml repeats the paths, and the test
keeps the copy honest). Also the project root and the state kept under it outside DVC
(checkpoints, GPU claims): :func:`in_project`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

# The project root: ``$DVC_ROOT``, which DVC sets for every stage command to the workspace's
# root, also for ``dvc exp run --queue`` / ``--temp`` runs that execute in a copy under
# ``.dvc/tmp/exps/``; without DVC (``python -m stages.train``), the working directory.
ROOT_ENV = "DVC_ROOT"
# State shared by the runs of one workspace, outside DVC's outputs (.gitignore lists .cache/):
CHECKPOINT_DIR = Path(".cache/checkpoints")  # resumable training state (resnet9.checkpoint)
GPU_LOCK_DIR = Path(".cache/gpu-locks")  # one lock file per GPU (resnet9.runtime)


def in_project(path: Path, env: Mapping[str, str] = os.environ) -> Path:
    """``path`` (relative) under ``$DVC_ROOT`` when DVC set it, else ``path`` as given, relative
    to the working directory (the project root when a stage runs)."""
    root = env.get(ROOT_ENV)
    return Path(root) / path if root else path


# check_params: the stage every other stage depends on, so that it runs first (stages/check_params.py)
PARAMS_CHECKED = Path("data/params_checked.txt")

# download: the canonical dataset every later stage reads
DATASET_DIR = Path("data/cifar10")
ARRAYS_FILE = DATASET_DIR / "arrays.npz"  # x_train, y_train, x_test, y_test (all uint8)
META_FILE = DATASET_DIR / "meta.json"  # counts, subset, sha256 per split; not the source

# lr_find
LR_FIND_METRICS = Path("metrics/lr_find.json")
LR_FIND_CSV = Path("plots/lr_find.csv")
LR_FIND_PNG = Path("plots/lr_find.png")

# train
MODEL_FILE = Path("data/model.pt")
TRAIN_METRICS = Path("metrics/train.json")
# Where the model came from (resnet9.provenance), in git beside the metrics but not a DVC
# metric: its strings (commit, date, device) would crowd the columns of `dvc exp show`.
PROVENANCE_FILE = Path("metrics/provenance.json")
TRAIN_HISTORY = Path("plots/train_history.csv")  # every epoch so far, after each (resnet9.live)
LIVE_DIR = Path("metrics/live")  # DVCLive's directory
LIVE_METRICS = LIVE_DIR / "metrics.json"  # DVCLive's summary: the latest epoch
LR_SCHEDULE = Path("plots/lr_schedule.csv")

# evaluate
EVALUATE_METRICS = Path("metrics/evaluate.json")
CONFUSION_CSV = Path("plots/confusion.csv")
PER_CLASS_CSV = Path("plots/per_class.csv")

# analyze: figures for people
FIGURES = {name: Path("plots") / f"{name}.png" for name in (
    "confusion", "per_class", "samples", "augmented", "training_curves", "lr_schedule",
    "misclassified", "gradcam")}
MODEL_SUMMARY = Path("plots/model_summary.txt")

# export
ONNX_FILE = Path("data/model.onnx")
TORCHSCRIPT_FILE = Path("data/model.ts")
EXPORTED_PROGRAM_FILE = Path("data/model.pt2")  # torch.export.save; torch.export.load opens it
EXPORT_METRICS = Path("metrics/export.json")

# What each stage writes: its outs, metrics and plots in dvc.yaml.
STAGE_OUTPUTS: dict[str, tuple[Path, ...]] = {
    "check_params": (PARAMS_CHECKED,),
    "download": (DATASET_DIR,),
    "lr_find": (LR_FIND_METRICS, LR_FIND_CSV, LR_FIND_PNG),
    "train": (MODEL_FILE, TRAIN_METRICS, LIVE_METRICS, PROVENANCE_FILE, TRAIN_HISTORY,
              LR_SCHEDULE),
    "evaluate": (EVALUATE_METRICS, CONFUSION_CSV, PER_CLASS_CSV),
    "analyze": (*FIGURES.values(), MODEL_SUMMARY),
    "export": (ONNX_FILE, TORCHSCRIPT_FILE, EXPORTED_PROGRAM_FILE, EXPORT_METRICS),
}
