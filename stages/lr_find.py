"""Stage lr_find: the LR range test (``lr_find.repeats`` of them, averaged), its curve and its
pick. Outputs: dvc.yaml, resnet9/paths.py.

Its pick is a suggestion (``suggested_max_lr``): train uses it only when ``train.max_lr`` is
``auto``, and writes the LR it actually used to metrics/train.json."""

import pandas as pd

from resnet9 import atomic_io, data, figures, loaders, lr_range, params, precision, recipe, runtime
from resnet9.paths import LR_FIND_CSV, LR_FIND_METRICS, LR_FIND_PNG
from stages import runner


def main() -> None:
    clock = runner.StageClock()
    clock.lap("imports")
    model_p, find_p, recipe_p = params.load("model", "lr_find", "recipe")
    device = runtime.select_device(recipe_p.device)
    amp = precision.resolve(recipe_p.precision, device)
    train, _ = data.load_dataset()
    clock.lap("data")
    print(f"lr_find: {find_p.num_iter} steps, LR {find_p.start_lr:g} -> {find_p.end_lr:g} "
          f"({find_p.step_mode}), batch {recipe_p.batch_size}, on {runtime.describe(device)}, "
          f"{precision.explain(recipe_p.precision, amp)}"
          + (f", the mean of {find_p.repeats} tests" if find_p.repeats > 1 else ""))
    curves = []
    for seed in lr_range.repeat_seeds(recipe_p.seed, find_p.repeats):
        generator = runtime.seed_everything(seed)
        loader = loaders.train_loader(train, recipe_p, device, generator)
        net = recipe.build_model(model_p, device)
        opt = recipe.optimizer(net, find_p.start_lr, recipe_p)
        curves.append(lr_range.range_test(net, opt, recipe.criterion(recipe_p), loader, device,
                                          find_p.start_lr, find_p.end_lr, find_p.num_iter,
                                          find_p.step_mode, amp, smooth_f=find_p.smooth_f))
    lrs, losses = lr_range.average_curves(curves)
    clock.lap("range test")
    pick = lr_range.pick_max_lr(lrs, losses, find_p.rule, find_p.factor)

    # The pick repeated on every row, so that the results page can mark it on the curve.
    atomic_io.write_csv(LR_FIND_CSV, pd.DataFrame(
        {"lr": lrs, "loss": losses, lr_range.SUGGESTED_MAX_LR: pick.max_lr}))
    figures.save_figure(LR_FIND_PNG, figures.lr_find(lrs, losses, pick.max_lr, pick.rule))
    atomic_io.write_json(LR_FIND_METRICS, {
        lr_range.SUGGESTED_MAX_LR: pick.max_lr,  # min_lr = max_lr / train.div_factor is train's
        "rule": pick.rule,
        "steepest_lr": pick.steepest_lr,
        "min_loss_lr": pick.min_loss_lr,
    })
    print(f"lr_find: suggested max_lr = {pick.max_lr:.4g} ({pick.rule}); wrote "
          f"{LR_FIND_METRICS}, {LR_FIND_CSV}, {LR_FIND_PNG}")
    clock.lap("outputs")
    print(clock.line("lr_find"))


if __name__ == "__main__":
    runner.run_stage("lr_find", main)
