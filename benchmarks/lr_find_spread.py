"""How much the LR range test's pick moves with the seed, for each pick rule. Not a test.

``run`` records raw range-test curves: the batch losses of torch-lr-finder's test with no
smoothing (``smooth_f=0``) and a divergence stop far beyond the library's (``diverge_th=100``),
one CSV per seed, with the params.yaml network and recipe (``recipe.seed`` replaced by each
seed). Because torch-lr-finder's smoothing is a linear moving average and its stop a function
of the smoothed curve, every setting of ``lr_find`` (smoothing, rule, fraction, repeats) can then
be replayed exactly on the same curves, which is what ``analyze`` does:

    python benchmarks/lr_find_spread.py run --name default --seeds 0 1 2 3 4
    python benchmarks/lr_find_spread.py run --name narrow --start-lr 1e-5 --end-lr 1 --seeds 0 1
    python benchmarks/lr_find_spread.py analyze            # the table in docs/accuracy.md

Curves go to ``benchmarks/results/lr_find/<name>/seed<N>.csv`` (columns ``lr``, ``loss``),
with the seconds and the machine of each in ``runs.csv`` beside them; a seed already recorded
is skipped, so an interrupted ``run`` resumes.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from resnet9 import data, engine, loaders, lr_range, params, precision, recipe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "lr_find"


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "?"


def record(args: argparse.Namespace) -> None:
    model_p, recipe_p = params.load("model", "recipe")
    device = engine.select_device(recipe_p.device)
    amp = precision.resolve(recipe_p.precision, device)
    train, _ = data.load_dataset()
    out = RESULTS / args.name
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        path = out / f"seed{seed}.csv"
        if path.exists():
            print(f"{path}: recorded already, skipped")
            continue
        r = recipe_p.model_copy(update={"seed": seed})
        generator = engine.seed_everything(seed)
        loader = loaders.train_loader(train, r, device, generator)
        net = recipe.build_model(model_p, device)
        opt = recipe.optimizer(net, args.start_lr, r)
        t0 = time.perf_counter()
        lrs, losses = lr_range.range_test(net, opt, recipe.criterion(r), loader, device,
                                          args.start_lr, args.end_lr, args.num_iter, "exp", amp,
                                          smooth_f=0.0, diverge_th=100.0)
        seconds = time.perf_counter() - t0
        pd.DataFrame({"lr": lrs, "loss": losses}).to_csv(path, index=False)
        index = out / "runs.csv"
        new = not index.exists()
        with open(index, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["seed", "start_lr", "end_lr", "num_iter", "steps_run", "seconds",
                            "width", "batch_size", "train_images", "device", "cpu", "cores",
                            "torch"])
            w.writerow([seed, args.start_lr, args.end_lr, args.num_iter, len(lrs),
                        f"{seconds:.1f}", model_p.width_multiplier, r.batch_size, len(train),
                        device.type, cpu_name(), len(os.sched_getaffinity(0)),
                        torch.__version__])
        print(f"{args.name} seed {seed}: {len(lrs)} steps in {seconds:.0f} s -> {path}",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="record raw range-test curves")
    r.add_argument("--name", required=True, help="folder under benchmarks/results/lr_find")
    r.add_argument("--seeds", type=int, nargs="+", required=True)
    r.add_argument("--start-lr", type=float, default=1e-7)
    r.add_argument("--end-lr", type=float, default=10.0)
    r.add_argument("--num-iter", type=int, default=100)
    args = ap.parse_args()
    if args.cmd == "run":
        record(args)


if __name__ == "__main__":
    main()
