"""Matplotlib figures for people: curves, the LR finder, image grids, Grad-CAM overlays.

Every function returns a ``matplotlib.figure.Figure``; :func:`resnet9.artifacts.save_figure`
writes it. Images come in as (N, H, W, 3) float arrays in [0, 1] or uint8.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def lr_finder(lrs: np.ndarray, losses: np.ndarray, picked: float, rule: str):
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
        ax_acc.plot(history.epoch, 100 * history[f"{split}_acc"], marker="o", ms=3, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="Accuracy")
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
    """Images in a grid with a title each; ``overlays`` (N, H, W) in [0, 1] drawn as a heatmap."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.8 * nrows + 0.4),
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
