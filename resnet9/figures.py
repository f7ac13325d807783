"""Matplotlib figures for people: curves, the LR finder, the confusion matrix, per-class
accuracy, image grids, Grad-CAM overlays.

Every function returns a ``matplotlib.figure.Figure``; :func:`save_figure` writes it, no
wider than :data:`MAX_WIDTH_PX`, so that a figure fits the results
page of ``dvc plots show`` and ``dvc plots diff``. These PNGs are also the offline view of the
results: the interactive charts need vega from a CDN. Accuracies are fractions in [0, 1], as
in the metrics. Images come in as (N, H, W, 3) float arrays in [0, 1] or uint8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from resnet9 import atomic_io  # noqa: E402

FIGURE_DPI = 110  # PNG resolution of every figure (pixels per inch)
MAX_WIDTH_PX = 1400  # wider images are cut off on the `dvc plots show` page
MAX_WIDTH_IN = MAX_WIDTH_PX / FIGURE_DPI


def save_figure(path: Path | str, fig) -> Path:
    """Save a matplotlib figure as PNG at :data:`FIGURE_DPI`, atomically
    (:func:`resnet9.atomic_io.write_with`), and close it; return ``path``."""
    try:
        return atomic_io.write_with(path, lambda p: fig.savefig(p, format="png", dpi=FIGURE_DPI,
                                                                bbox_inches="tight"), ".png")
    finally:
        plt.close(fig)


def lr_find(lrs: np.ndarray, losses: np.ndarray, picked: float, rule: str):
    """Smoothed loss vs LR on a log axis, the picked max_lr marked."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(lrs, losses, lw=1.5)
    ax.axvline(picked, color="tab:red", ls="--", label=f"max_lr = {picked:.3g} ({rule})")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss (smoothed cross-entropy)")
    ax.set_title("LR range test")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return fig


def training_curves(history: pd.DataFrame):
    """Loss and accuracy per epoch, train vs test, side by side."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for split in ("train", "test"):
        ax_loss.plot(history.epoch, history[f"{split}_loss"], marker="o", ms=3, label=split)
        ax_acc.plot(history.epoch, history[f"{split}_acc"], marker="o", ms=3, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (fraction)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def lr_schedule(schedule: pd.DataFrame, steps_per_epoch: int | None = None):
    """Learning rate per training step (the One Cycle policy)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = schedule.step / steps_per_epoch if steps_per_epoch else schedule.step
    ax.plot(x, schedule.lr)
    ax.set(xlabel="epoch" if steps_per_epoch else "step", ylabel="learning rate",
           title="One Cycle LR schedule")
    ax.grid(alpha=0.3)
    return fig


def image_grid(images: np.ndarray, titles: Sequence[str], ncols: int, title: str,
               overlays: np.ndarray | None = None):
    """Images in a grid with a title each; ``overlays`` (N, H, W) in [0, 1] drawn as a heatmap.

    Cells are 1.6 inches wide, narrower when ``ncols`` of them would pass :data:`MAX_WIDTH_PX`.
    """
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    cell = min(1.6, MAX_WIDTH_IN / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, (cell + 0.2) * nrows + 0.4),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], interpolation="nearest")
        if overlays is not None:
            ax.imshow(overlays[i], cmap="jet", alpha=0.45, interpolation="bilinear")
        ax.set_title(titles[i], fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(actual: Sequence[str], predicted: Sequence[str], classes: Sequence[str]):
    """Counts of (actual, predicted) class pairs as a heatmap, rows actual, columns predicted;
    each cell shows its count. ``actual`` and ``predicted`` are class names, one per image."""
    counts = pd.crosstab(pd.Categorical(actual, categories=classes),
                         pd.Categorical(predicted, categories=classes), dropna=False)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(counts.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix (test set, counts)")
    top = counts.to_numpy().max() or 1
    for (i, j), value in np.ndenumerate(counts.to_numpy()):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                color="white" if value > top / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def per_class_accuracy(accuracy: pd.Series):
    """Top-1 accuracy per class (a Series indexed by class name, fractions) as horizontal bars,
    each labelled with its value."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bars = ax.barh(accuracy.index[::-1], accuracy.to_numpy()[::-1], color="tab:blue")
    ax.bar_label(bars, fmt="%.3f", padding=3, fontsize=8)
    ax.set(xlabel="top-1 accuracy (fraction)", xlim=(0, 1.08),
           title="Per-class top-1 accuracy (test set)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
