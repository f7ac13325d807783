"""The PNG figures: within the results page's width, and showing the numbers they are given."""

import numpy as np
import pandas as pd
from PIL import Image

from resnet9 import atomic_io, figures

CLASSES = ["cat", "dog", "ship"]


def _width_px(path) -> int:
    with Image.open(path) as image:
        return image.size[0]


def test_a_ten_column_image_grid_fits_the_page(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    fig = figures.image_grid(images, [f"image {i}" for i in range(50)], 10, "ten columns")
    path = atomic_io.save_figure(tmp_path / "grid.png", fig)
    assert 1000 < _width_px(path) <= figures.MAX_WIDTH_PX


def test_confusion_matrix_shows_the_count_of_each_pair(tmp_path):
    actual = ["cat", "cat", "dog", "ship", "ship", "ship"]
    predicted = ["cat", "dog", "dog", "ship", "ship", "cat"]
    fig = figures.confusion_matrix(actual, predicted, CLASSES)
    image = fig.axes[0].images[0].get_array()
    assert image.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # rows actual, columns predicted
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("2") == 1 and texts.count("0") == 4
    assert _width_px(atomic_io.save_figure(tmp_path / "confusion.png", fig)) <= 1400


def test_per_class_accuracy_labels_each_bar_with_its_fraction(tmp_path):
    accuracy = pd.Series([0.5, 0.25, 1.0], index=CLASSES)
    fig = figures.per_class_accuracy(accuracy)
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert {"0.500", "0.250", "1.000"} <= labels
    assert fig.axes[0].get_xlabel() == "top-1 accuracy (fraction)"
    assert _width_px(atomic_io.save_figure(tmp_path / "per_class.png", fig)) <= 1400


def test_training_curves_plot_accuracy_as_a_fraction():
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.0], "test_loss": [1.5, 1.2],
                            "train_acc": [0.3, 0.6], "test_acc": [0.4, 0.5]})
    fig = figures.training_curves(history)
    accuracy_axis = fig.axes[1]
    assert accuracy_axis.get_ylabel() == "top-1 accuracy (fraction)"
    assert accuracy_axis.lines[0].get_ydata().tolist() == [0.3, 0.6]
