"""Stage lr_find: LR range test -> metrics/lr_find.json, plots/lr_find.{csv,png}.

Its pick is a suggestion (``suggested_max_lr``): train uses it only when ``train.max_lr`` is
``auto``, and writes the LR it actually used to metrics/train.json."""

import pandas as pd

from resnet9 import artifacts, cli, data, engine, figures, lr_range, params, precision, recipe
from resnet9.data import DATASET_DIR
from resnet9.recipe import LR_FIND_METRICS


def main() -> None:
    model_p, find_p, train_p = params.load("model", "lr_find", "train")
    device = engine.select_device(train_p.device)
    amp = precision.resolve(train_p.precision, device)
    train, _ = data.load_dataset(DATASET_DIR)
    generator = engine.seed_everything(train_p.seed)
    loader = recipe.train_loader(train, train_p, device, generator)
    net = recipe.build_model(model_p, device)
    opt = recipe.optimizer(net, find_p.start_lr, train_p.weight_decay,
                           train_p.decay_bn_and_bias)
    print(f"lr_find: {find_p.num_iter} steps, LR {find_p.start_lr:g} -> {find_p.end_lr:g} "
          f"({find_p.step_mode}), batch {train_p.batch_size}, on {device}, {amp.name}")
    lrs, losses = lr_range.range_test(net, opt, recipe.criterion(train_p), loader, device,
                                      find_p.start_lr, find_p.end_lr, find_p.num_iter,
                                      find_p.step_mode, amp)
    pick = lr_range.pick_max_lr(lrs, losses, find_p.rule, find_p.fraction)

    # The pick repeated on every row, so that the results page can mark it on the curve.
    artifacts.write_csv("plots/lr_find.csv", pd.DataFrame(
        {"lr": lrs, "loss": losses, "suggested_max_lr": pick.max_lr}))
    artifacts.save_figure("plots/lr_find.png",
                          figures.lr_finder(lrs, losses, pick.max_lr, pick.rule))
    artifacts.write_json(LR_FIND_METRICS, {
        "suggested_max_lr": pick.max_lr,  # min_lr = max_lr / train.div_factor is train's
        "rule": pick.rule,
        "steepest_lr": pick.steepest_lr,
        "min_loss_lr": pick.min_loss_lr,
    })
    print(f"lr_find: suggested max_lr = {pick.max_lr:.4g} ({pick.rule}); wrote "
          f"{LR_FIND_METRICS}, plots/lr_find.csv, plots/lr_find.png")


if __name__ == "__main__":
    cli.run("lr_find", main)
