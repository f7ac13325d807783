"""Stage evaluate: test top-1 accuracy and loss -> metrics/evaluate.json; the confusion pairs
and per-class accuracy -> plots/confusion.csv, plots/per_class.csv (a plot, not a metric: ten
more columns would crowd `dvc exp show`)."""

import pandas as pd

from resnet9 import artifacts, cli, data, engine, params, precision, recipe
from resnet9.data import DATASET_DIR
from resnet9.recipe import MODEL_FILE


def main() -> None:
    eval_p, train_p = params.load("evaluate", "train")
    device = engine.select_device(train_p.device)
    amp = precision.resolve(train_p.precision, device)
    net, saved = recipe.load_trained(MODEL_FILE, device)
    _, test = data.load_dataset(DATASET_DIR)
    loader = recipe.test_loader(test, 1024, device)
    # One pass gives both the plain and the mirrored logits, for flip TTA.
    logits, mirrored, labels = engine.predict_views(net, loader, device, mirror=eval_p.tta,
                                                    desc="evaluate", precision=amp)
    loss, accuracy = engine.score(logits, labels)
    predicted = logits.argmax(1).numpy()
    classes = saved["classes"]
    frame = pd.DataFrame({"actual": [classes[i] for i in labels.numpy()],
                          "predicted": [classes[i] for i in predicted]})
    per_class = (frame.actual == frame.predicted).groupby(frame.actual).mean().reindex(classes)

    metrics = {"accuracy": accuracy, "loss": loss, "test_images": len(labels)}
    if eval_p.tta:
        metrics["tta_accuracy"] = engine.score(engine.flip_tta(logits, mirrored), labels)[1]
    artifacts.write_json("metrics/evaluate.json", metrics)
    artifacts.write_csv("plots/confusion.csv", frame)
    artifacts.write_csv("plots/per_class.csv", pd.DataFrame(
        {"class": classes, "accuracy": per_class.values}))
    print(f"evaluate: top-1 accuracy {accuracy:.4f}, loss {loss:.4f} on {len(labels):,} test "
          "images; wrote metrics/evaluate.json, plots/confusion.csv, plots/per_class.csv")


if __name__ == "__main__":
    cli.run("evaluate", main)
