"""The PNG figures: within the results page's width, and showing the numbers they are given;
and scripts/plots_screenshot.sh, which renders that page, with any output directory."""

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import ROOT, colour_arrays
from resnet9 import augment, cifar10, figures

CLASSES = ["cat", "dog", "ship"]
SCREENSHOT = ROOT / "scripts" / "plots_screenshot.sh"


def _width_px(path) -> int:
    with Image.open(path) as image:
        return image.size[0]


def test_a_ten_column_image_grid_fits_the_page(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    fig = figures.image_grid(images, [f"image {i}" for i in range(50)], 10, "ten columns")
    path = figures.save_figure(tmp_path / "grid.png", fig)
    assert 1000 < _width_px(path) <= figures.MAX_WIDTH_PX


@pytest.mark.parametrize("name", ["samples", "augmented"])
def test_the_analyze_stages_image_grids_fit_the_page(tmp_path, name):
    """plots/samples.png and plots/augmented.png drawn as stages/analyze.py draws them: the same
    columns, CIFAR-10's class names as titles, uint8 images, and for augmented the train
    augmentation's denormalized float output (issue 32: they were 1,749 px wide)."""
    from stages.analyze import PER_CLASS

    x, y = colour_arrays(10 * PER_CLASS)
    order = np.argsort(y, kind="stable")  # class by class, as the stage picks them
    images, titles = x[order], [cifar10.CLASSES[c] for c in y[order]]
    if name == "augmented":
        aug = augment.train_transform(seed=0)
        images = augment.denormalize(np.stack([aug(image=i)["image"].numpy() for i in images]))
    fig = figures.image_grid(images, titles, PER_CLASS * 2, name)
    path = figures.save_figure(tmp_path / f"{name}.png", fig)
    assert _width_px(path) <= figures.MAX_WIDTH_PX


def test_confusion_matrix_shows_the_count_of_each_pair(tmp_path):
    actual = ["cat", "cat", "dog", "ship", "ship", "ship"]
    predicted = ["cat", "dog", "dog", "ship", "ship", "cat"]
    fig = figures.confusion_matrix(actual, predicted, CLASSES)
    image = fig.axes[0].images[0].get_array()
    assert image.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # rows actual, columns predicted
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("2") == 1 and texts.count("0") == 4
    assert _width_px(figures.save_figure(tmp_path / "confusion.png", fig)) <= figures.MAX_WIDTH_PX


def test_per_class_accuracy_labels_each_bar_with_its_fraction(tmp_path):
    accuracy = pd.Series([0.5, 0.25, 1.0], index=CLASSES)
    fig = figures.per_class_accuracy(accuracy)
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert {"0.500", "0.250", "1.000"} <= labels
    assert fig.axes[0].get_xlabel() == "top-1 accuracy (fraction)"
    assert _width_px(figures.save_figure(tmp_path / "per_class.png", fig)) <= figures.MAX_WIDTH_PX


def test_training_curves_plot_accuracy_as_a_fraction():
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.0], "test_loss": [1.5, 1.2],
                            "train_acc": [0.3, 0.6], "test_acc": [0.4, 0.5]})
    fig = figures.training_curves(history)
    accuracy_axis = fig.axes[1]
    assert accuracy_axis.get_ylabel() == "top-1 accuracy (fraction)"
    assert accuracy_axis.lines[0].get_ydata().tolist() == [0.3, 0.6]


def _need_chromium() -> None:
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing; CI must install it (apt-get install chromium)")
        pytest.skip("chromium is absent (scripts/plots_screenshot.sh needs it)")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_plots_screenshot_writes_where_it_is_told(tmp_path, kind):
    """An absolute out_dir used to exit 1 without a word (issue 32); a relative one is taken
    from the caller's directory. Needs chromium, dvc and, the first time, npm (vega)."""
    _need_chromium()
    out = tmp_path / "page"
    arg = str(out) if kind == "absolute" else "page"
    proc = subprocess.run(["bash", str(SCREENSHOT), arg], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"wrote {out}/screenshot.png" in proc.stdout
    assert (out / "index.html").is_file()
    with Image.open(out / "screenshot.png") as shot:
        assert shot.size[0] == 1500


def test_plots_screenshot_names_what_is_missing(tmp_path):
    # A PATH without chromium (dirname is all the script runs before it looks): one line
    # saying so, not set -e's silent exit 1.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    (bin_dir / "dvc").write_text("#!/bin/sh\nexit 0\n")  # where .venv/bin/dvc is absent
    (bin_dir / "dvc").chmod(0o755)
    proc = subprocess.run([shutil.which("bash"), str(SCREENSHOT), str(tmp_path / "page")],
                          cwd=tmp_path, env={"PATH": str(bin_dir)}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == ("plots_screenshot.sh: error: chromium not found: "
                           "apt-get install chromium\n")
    assert not (tmp_path / "page").exists()


def test_plots_screenshot_refuses_two_output_directories(tmp_path):
    proc = subprocess.run(["bash", str(SCREENSHOT), "a", "b"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "at most one argument" in proc.stderr
