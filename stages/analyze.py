"""Stage analyze: figures for people -> plots/*.png and plots/model_summary.txt."""

import numpy as np
import pandas as pd
import torch

from resnet9 import (artifacts, augment, cli, data, engine, explain, figures, params, precision,
                     recipe)
from resnet9.data import DATASET_DIR
from resnet9.recipe import MODEL_FILE

PER_CLASS = 5  # sample images per class in the augmentation grids


def main() -> None:
    p, train_p = params.load("analyze", "train")
    device = engine.select_device(train_p.device)
    amp = precision.resolve(train_p.precision, device)
    net, saved = recipe.load_trained(MODEL_FILE, device)
    train, test = data.load_dataset(DATASET_DIR)
    classes = saved["classes"]
    written = []

    def save(name, fig):
        written.append(artifacts.save_figure(f"plots/{name}", fig))

    # Sample training images, class by class, and the same images after the train augmentation.
    picks = np.concatenate([np.flatnonzero(train.y == c)[:PER_CLASS] for c in range(10)])
    titles = [classes[c] for c in train.y[picks]]
    save("samples.png", figures.image_grid(train.x[picks], titles, PER_CLASS * 2,
                                           "Training images"))
    aug = augment.train_transform(seed=0)
    augmented = np.stack([aug(image=img)["image"].numpy() for img in train.x[picks]])
    save("augmented.png", figures.image_grid(
        augment.denormalize(augmented), titles, PER_CLASS * 2,
        "The same images after pad-crop, flip and CutOut"))

    # The evaluation as PNGs too: the interactive charts need vega from a CDN, these do not.
    confusion = pd.read_csv("plots/confusion.csv")
    save("confusion.png", figures.confusion_matrix(confusion.actual, confusion.predicted, classes))
    per_class = pd.read_csv("plots/per_class.csv").set_index("class")["accuracy"]
    save("per_class.png", figures.per_class_accuracy(per_class))

    history = pd.read_csv("plots/train_history.csv")
    save("training_curves.png", figures.training_curves(history))
    lrs = pd.read_csv("plots/lr_schedule.csv")
    save("lr_schedule.png", figures.lr_schedule(lrs, len(lrs) // len(history)))

    # Misclassified test images (from evaluate's predictions) and their Grad-CAM.
    wrong = np.flatnonzero((confusion.actual != confusion.predicted).to_numpy())
    wrong = wrong[: p.num_misclassified]
    labels = [f"{pr} / {ac}" for pr, ac in
              zip(confusion.predicted.iloc[wrong], confusion.actual.iloc[wrong])]
    save("misclassified.png", figures.image_grid(
        test.x[wrong], labels, 5, "Misclassified test images: predicted / actual"))
    if len(wrong):
        loader = recipe.test_loader(data.Split(test.x[wrong], test.y[wrong]), len(wrong), device)
        images = next(iter(loader))[0].to(device).contiguous(memory_format=torch.channels_last)
        targets = torch.tensor([classes.index(c) for c in confusion.predicted.iloc[wrong]],
                               device=device)
        with amp.autocast():
            cams = explain.gradcam(net, getattr(net, p.gradcam_layer), images, targets)
        save("gradcam.png", figures.image_grid(
            test.x[wrong], labels, 5, f"Grad-CAM at {p.gradcam_layer} for the predicted class",
            overlays=cams.numpy()))
    else:
        save("gradcam.png", figures.image_grid(test.x[:0], [], 5,
                                               "Grad-CAM: no misclassified test images"))
    written.append(artifacts.write_text("plots/model_summary.txt", explain.summary(net, device)))
    print("analyze: wrote " + ", ".join(str(w) for w in written))


if __name__ == "__main__":
    cli.run("analyze", main)
