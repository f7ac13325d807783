"""Stage analyze: figures for people (PNGs of the evaluation, the training curves, samples,
misclassified images and their Grad-CAM) and the model summary. Outputs: dvc.yaml,
resnet9/paths.py."""

import numpy as np
import pandas as pd

from resnet9 import (atomic_io, augment, cifar10, data, figures, loaders, model, model_file,
                     params, precision, predict, runtime)
from resnet9.paths import (CONFUSION_CSV, FIGURES, LR_SCHEDULE, MODEL_FILE, MODEL_SUMMARY,
                           PER_CLASS_CSV, TRAIN_HISTORY)
from stages import runner

PER_CLASS = 5  # sample images per class in the augmentation grids


def main() -> None:
    clock = runner.StageClock()
    clock.lap("imports")
    p, recipe_p = params.load("analyze", "recipe")
    device = runtime.select_device(recipe_p.device)
    amp = precision.resolve(recipe_p.precision, device)
    net, saved = model_file.load_trained(MODEL_FILE, device)
    train, test = data.load_dataset()
    classes = saved["classes"]
    written = []
    clock.lap("data")

    def save(name, fig):
        written.append(figures.save_figure(FIGURES[name], fig))

    # Sample training images, class by class, and the same images after the train augmentation.
    picks = np.concatenate([np.flatnonzero(train.y == c)[:PER_CLASS]
                            for c in range(cifar10.NUM_CLASSES)])
    titles = [classes[c] for c in train.y[picks]]
    save("samples", figures.image_grid(train.x[picks], titles, PER_CLASS * 2,
                                           "Training images"))
    aug = augment.train_transform(seed=0)
    augmented = np.stack([aug(image=img)["image"].numpy() for img in train.x[picks]])
    save("augmented", figures.image_grid(
        augment.denormalize(augmented), titles, PER_CLASS * 2,
        "The same images after pad-crop, flip and CutOut"))

    # The evaluation as PNGs too: the interactive charts need vega from a CDN, these do not.
    confusion = pd.read_csv(CONFUSION_CSV)
    save("confusion", figures.confusion_matrix(confusion.actual, confusion.predicted, classes))
    per_class = pd.read_csv(PER_CLASS_CSV).set_index("class")["accuracy"]
    save("per_class", figures.per_class_accuracy(per_class))

    history = pd.read_csv(TRAIN_HISTORY)
    save("training_curves", figures.training_curves(history))
    lrs = pd.read_csv(LR_SCHEDULE)
    save("lr_schedule", figures.lr_schedule(lrs, len(lrs) // len(history)))

    # Misclassified test images (from evaluate's predictions) and their Grad-CAM.
    wrong = np.flatnonzero((confusion.actual != confusion.predicted).to_numpy())
    wrong = wrong[: p.num_misclassified]
    labels = [f"{pr} / {ac}" for pr, ac in
              zip(confusion.predicted.iloc[wrong], confusion.actual.iloc[wrong])]
    save("misclassified", figures.image_grid(
        test.x[wrong], labels, 5, "Misclassified test images: predicted / actual"))
    if len(wrong):
        loader = loaders.test_loader(data.Split(test.x[wrong], test.y[wrong]), device, len(wrong))
        cams = predict.gradcam_maps(net, p.gradcam_layer, next(iter(loader))[0],
                                    [classes.index(c) for c in confusion.predicted.iloc[wrong]],
                                    device, amp)
        save("gradcam", figures.image_grid(
            test.x[wrong], labels, 5, f"Grad-CAM at {p.gradcam_layer} for the predicted class",
            overlays=cams))
    else:
        save("gradcam", figures.image_grid(test.x[:0], [], 5,
                                               "Grad-CAM: no misclassified test images"))
    written.append(atomic_io.write_text(MODEL_SUMMARY, model.summary(net, device)))
    clock.lap("figures")
    print("analyze: wrote " + ", ".join(str(w) for w in written))
    print(clock.line("analyze"))


if __name__ == "__main__":
    runner.run_stage("analyze", main)
