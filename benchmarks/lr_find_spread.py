"""How much the LR range test's pick moves with the seed, for each pick rule. Not a test.

``run`` records raw range-test curves: the batch loss and LR of every step of torch-lr-finder's
test (``lr_range.range_test``), one CSV per seed, with the params.yaml network and recipe
(``recipe.seed`` replaced by each seed). Each test stops where torch-lr-finder's default would
(its smoothed loss above 5x its lowest). Because that smoothing is a linear moving average,
``lr_range.smooth`` replays it exactly on the raw losses, and so every setting of ``lr_find``
(rule, factor, smoothing, repeats) can be applied to the same curves afterwards, which is what
``analyze`` does:

    python benchmarks/lr_find_spread.py run --name default --seeds 0 1 2 3 4
    python benchmarks/lr_find_spread.py run --name narrow --start-lr 1e-5 --end-lr 1 --seeds 0 1
    python benchmarks/lr_find_spread.py run --name narrow-bf16 --seeds 0 1 2 3 4  # on an AMX CPU
    python benchmarks/lr_find_spread.py analyze            # the table in docs/accuracy.md

Curves go to ``benchmarks/results/lr_find/<name>/seed<N>.csv`` (columns ``lr``, ``loss``),
with the seconds, the precision (``recipe.precision`` as resolved here) and the machine of each
in ``runs.csv`` beside them; a seed already recorded is skipped, so an interrupted ``run``
resumes. A folder holds one precision: name a new one for another. params.yaml and the dataset
(``data/cifar10``, from ``dvc repro download``) are read from the working directory.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from resnet9 import data, loaders, lr_range, params, precision, recipe, runtime

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "lr_find"


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "?"


class _Diverged(Exception):
    """torch-lr-finder's default stop, reached."""


class RecordingLoss(nn.Module):
    """The recipe's loss, recording each batch's LR and raw loss, and ending the test (by raising
    :class:`_Diverged`) at the step where torch-lr-finder's default smoothing and stop would end
    it. The loss it records is the value torch-lr-finder records (``loss.item()``)."""

    def __init__(self, criterion: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        super().__init__()
        self.criterion, self.optimizer = criterion, optimizer
        self.lrs: list[float] = []
        self.raw: list[float] = []

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.criterion(logits, y)
        self.lrs.append(self.optimizer.param_groups[0]["lr"])
        self.raw.append(loss.item())
        smoothed = lr_range.smooth(np.array(self.raw))
        if smoothed[-1] > lr_range.DIVERGE_TH * smoothed.min():
            raise _Diverged
        return loss


def record(args: argparse.Namespace) -> None:
    model_p, find_p, recipe_p = params.load("model", "lr_find", "recipe")
    for key in ("start_lr", "end_lr", "num_iter"):  # the stage's own range unless overridden
        if getattr(args, key) is None:
            setattr(args, key, getattr(find_p, key))
    device = runtime.select_device(recipe_p.device)
    amp = precision.resolve(recipe_p.precision, device)
    train, _ = data.load_dataset()
    out = RESULTS / args.name
    index = out / "runs.csv"
    if index.exists():  # one precision per folder, checked before any test runs
        before = pd.read_csv(index)
        if "precision" not in before.columns:
            raise SystemExit(f"{index}: no precision column (recorded before it was added); "
                             f"record into a new --name")
        if set(before.precision) != {amp.name}:
            raise SystemExit(f"{index}: recorded in {', '.join(sorted(set(before.precision)))}, "
                             f"this run is {amp.name}; record into a new --name")
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        path = out / f"seed{seed}.csv"
        if path.exists():
            print(f"{path}: recorded already, skipped")
            continue
        r = recipe_p.model_copy(update={"seed": seed})
        generator = runtime.seed_everything(seed)
        loader = loaders.train_loader(train, r, device, generator)
        net = recipe.build_model(model_p, device)
        opt = recipe.optimizer(net, args.start_lr, r)
        t0 = time.perf_counter()
        loss = RecordingLoss(recipe.criterion(r), opt)
        try:  # raw losses: no smoothing, no stop of the library's own
            lr_range.range_test(net, opt, loss, loader, device, args.start_lr, args.end_lr,
                                args.num_iter, "exp", amp, smooth_f=0.0, diverge_th=1e30)
        except _Diverged:
            pass
        lrs, losses = np.array(loss.lrs), np.array(loss.raw)
        seconds = time.perf_counter() - t0
        pd.DataFrame({"lr": lrs, "loss": losses}).to_csv(path, index=False)
        new = not index.exists()
        with open(index, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["seed", "start_lr", "end_lr", "num_iter", "steps_run", "seconds",
                            "width", "batch_size", "train_images", "device", "precision",
                            "cpu", "cores", "torch"])
            w.writerow([seed, args.start_lr, args.end_lr, args.num_iter, len(lrs),
                        f"{seconds:.1f}", model_p.width_multiplier, r.batch_size, len(train),
                        device.type, amp.name, cpu_name(), len(os.sched_getaffinity(0)),
                        torch.__version__])
        print(f"{args.name} seed {seed}: {len(lrs)} steps in {seconds:.0f} s -> {path}",
              flush=True)


# (label, rule, factor) of each pick rule compared; max/min does not depend on the factor
RULE_VARIANTS = [("min_loss_fraction 0.1", "min_loss_fraction", 0.1),
                 ("min_loss_fraction 0.3", "min_loss_fraction", 0.3),
                 ("steepest", "steepest", 1.0),
                 ("valley (fastai)", "valley", 1.0),
                 ("valley x 4", "valley", 4.0)]
RANGE_OF_5 = 2.326  # expected range (max - min) of 5 draws from a normal, in SDs


def load_setting(folder: Path) -> tuple[pd.DataFrame, dict[int, tuple[np.ndarray, np.ndarray]]]:
    runs = pd.read_csv(folder / "runs.csv").drop_duplicates("seed", keep="last")
    curves = {}
    for seed in sorted(runs.seed):
        df = pd.read_csv(folder / f"seed{seed}.csv")
        curves[int(seed)] = (df.lr.to_numpy(), df.loss.to_numpy())
    return runs.set_index("seed"), curves


def spread_rows(name: str, runs: pd.DataFrame, curves: dict, smooth_f: float,
                repeats: int) -> list[dict]:
    """One row per rule: the pick of every combination of ``repeats`` recorded seeds (each seed
    alone when 1), their median, and the spread that 5 seeds of ``recipe.seed`` would show.

    The spread of k-test averages is estimated from all combinations of k of the N curves: the
    standard deviation s of log(pick) over them, times sqrt((N - 1) / (N - k)) because
    combinations share curves (the finite-population correction, exact for a mean of k of N),
    and exp(2.326 s), the expected max/min of 5 independent draws from a log-normal with that
    s. With one test per pick the observed max/min over the seeds is given too.
    """
    seeds = sorted(curves)
    smoothed = {s: lr_range.smooth(curves[s][1], smooth_f) for s in seeds}
    # what the stage runs: the steps up to torch-lr-finder's stop, at the measured s/step
    s_per_step = float(np.median(runs.seconds / runs.steps_run))
    steps = float(np.mean([len(smoothed[s]) for s in seeds]))
    rows = []
    for label, rule, factor in RULE_VARIANTS:
        picks = []
        for group in itertools.combinations(seeds, repeats):
            lrs, losses = lr_range.average_curves(
                [(curves[s][0][:len(smoothed[s])], smoothed[s]) for s in group])
            picks.append(lr_range.pick_max_lr(lrs, losses, rule, factor).max_lr)
        picks = np.array(picks)
        n = len(seeds)
        sd = float(np.std(np.log(picks), ddof=1)) * np.sqrt((n - 1) / (n - repeats))
        rows.append({
            "range": name, "steps": int(runs.num_iter.iloc[0]), "smooth_f": smooth_f,
            "rule": label, "repeats": repeats, "seeds": len(seeds),
            "median max_lr": float(np.median(picks)),
            "max/min seen": picks.max() / picks.min() if repeats == 1 else float("nan"),
            "max/min of 5 (est.)": float(np.exp(RANGE_OF_5 * sd)),
            "CPU min": repeats * steps * s_per_step / 60,
            "picks": " ".join(f"{p:.2g}" for p in picks) if repeats == 1 else "",
        })
    return rows


def analyze(args: argparse.Namespace) -> None:
    rows = []
    for folder in sorted(p for p in RESULTS.iterdir() if (p / "runs.csv").exists()):
        runs, curves = load_setting(folder)
        lo, hi = runs.start_lr.iloc[0], runs.end_lr.iloc[0]
        name = f"{folder.name} ({lo:g} to {hi:g}, {'/'.join(runs.precision.unique())})"
        for smooth_f in args.smooth_f:
            for repeats in args.repeats:
                if len(curves) > repeats:
                    rows.extend(spread_rows(name, runs, curves, smooth_f, repeats))
    table = pd.DataFrame(rows)
    fmt = {"median max_lr": "{:.2e}", "max/min seen": "{:.2f}", "max/min of 5 (est.)": "{:.2f}",
           "CPU min": "{:.0f}"}
    for col, f in fmt.items():
        table[col] = table[col].map(lambda v: "" if v != v else f.format(v))
    text = table.to_markdown(index=False)
    (RESULTS / "spread.md").write_text(text + "\n")
    print(text)
    print(f"wrote {RESULTS / 'spread.md'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="record raw range-test curves")
    r.add_argument("--name", required=True, help="folder under benchmarks/results/lr_find")
    r.add_argument("--seeds", type=int, nargs="+", required=True)
    r.add_argument("--start-lr", type=float, help="default: params.yaml's lr_find.start_lr")
    r.add_argument("--end-lr", type=float, help="default: lr_find.end_lr")
    r.add_argument("--num-iter", type=int, help="default: lr_find.num_iter")
    a = sub.add_parser("analyze", help="apply every rule to the recorded curves")
    a.add_argument("--smooth-f", type=float, nargs="+", default=[lr_range.SMOOTH_F, 0.02])
    a.add_argument("--repeats", type=int, nargs="+", default=[1, 2, 3])
    args = ap.parse_args()
    if args.cmd == "run":
        record(args)
    else:
        analyze(args)


if __name__ == "__main__":
    main()
