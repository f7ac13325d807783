"""Stage evaluate: the test set's top-1 accuracy and loss (a metric), and the confusion pairs and
per-class accuracy (plots, not metrics: ten more columns would crowd `dvc exp show`). Outputs:
dvc.yaml, resnet9/paths.py."""

import pandas as pd

from resnet9 import atomic_io, data, engine, loaders, model_file, params, precision, runtime
from resnet9.paths import CONFUSION_CSV, EVALUATE_METRICS, MODEL_FILE, PER_CLASS_CSV
from stages import runner


def main() -> None:
    clock = runner.StageClock()
    clock.lap("imports")
    eval_p, recipe_p = params.load("evaluate", "recipe")
    device = runtime.select_device(recipe_p.device)
    amp = precision.resolve(recipe_p.precision, device)
    net, saved = model_file.load_trained(MODEL_FILE, device)
    _, test = data.load_dataset()
    loader = loaders.test_loader(test, device)
    clock.lap("data")
    # One pass gives both the plain and the mirrored logits, for flip TTA.
    logits, mirrored, labels = engine.predict_views(net, loader, device, mirror=eval_p.tta,
                                                    desc="evaluate", precision=amp)
    loss, accuracy = engine.score(logits, labels)
    clock.lap("evaluation")
    predicted = logits.argmax(1).numpy()
    classes = saved["classes"]
    frame = pd.DataFrame({"actual": [classes[i] for i in labels.numpy()],
                          "predicted": [classes[i] for i in predicted]})
    per_class = (frame.actual == frame.predicted).groupby(frame.actual).mean().reindex(classes)

    metrics = {"accuracy": accuracy, "loss": loss, "test_images": len(labels)}
    if eval_p.tta:
        metrics["tta_accuracy"] = engine.score(engine.flip_tta(logits, mirrored), labels)[1]
    atomic_io.write_json(EVALUATE_METRICS, metrics)
    atomic_io.write_csv(CONFUSION_CSV, frame)
    atomic_io.write_csv(PER_CLASS_CSV, pd.DataFrame(
        {"class": classes, "accuracy": per_class.values}))
    tta = f", flip-TTA top-1 {metrics['tta_accuracy']:.4f}" if eval_p.tta else ""
    print(f"evaluate: top-1 accuracy {accuracy:.4f}{tta}, loss {loss:.4f} on {len(labels):,} "
          f"test images; wrote {EVALUATE_METRICS}, {CONFUSION_CSV}, {PER_CLASS_CSV}")
    clock.lap("outputs")
    print(clock.line("evaluate"))


if __name__ == "__main__":
    runner.run_stage("evaluate", main)
