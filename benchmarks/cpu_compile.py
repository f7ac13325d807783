"""Does ``torch.compile`` pay for itself in a spec run on this CPU? Not a test.

Times speed.py's (a), forward + backward + Adam on one batch already in memory, channels_last,
at the precision ``recipe.precision: auto`` picks here: eager, then compiled (``train.compile:
true`` compiles the network the same way, stages/train.py). The compiled run's first step
includes the compilation; the steady steps after it give its speed. Then the break-even: the
compile time against the time saved over a spec run's 24 epochs of 50,000 images. Run from
the repository root:

    python benchmarks/cpu_compile.py --width 1.0 --batch-size 128 --steps 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_precision  # noqa: E402  (the CPU's name and bf16 flags)
import speed  # noqa: E402

from resnet9 import params, precision, preprocess, recipe  # noqa: E402
from resnet9.params import ModelParams  # noqa: E402

SPEC_IMAGES = 24 * 50_000  # training images in a spec run (24 epochs of the full train split)


def step_seconds(net, opt, x, y, amp, steps: int) -> tuple[float, float]:
    """(seconds of the first step, mean seconds of the next ``steps``) for one training step
    (forward under ``amp``, cross-entropy, backward, Adam) on the batch ``x``, ``y``."""
    def step():
        with amp.autocast():
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return first, (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    ap.add_argument("--precision", choices=params.PRECISIONS, default="auto")
    ap.add_argument("--data", default=str(speed.ROOT.parent / "shared/data/cifar10.npz"))
    args = ap.parse_args()
    cpu = torch.device("cpu")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    with np.load(args.data) as npz:
        x = preprocess.normalize(torch.as_tensor(npz["x_train"][:args.batch_size]))
        y = torch.as_tensor(npz["y_train"][:args.batch_size].astype(np.int64))
    amp = precision.resolve(args.precision, cpu)
    info = speed.machine(cpu)
    print(f"{info['cpu']}, {info['cpu_cores']} cores, torch {info['torch']}, flags: "
          f"{' '.join(cpu_precision.cpu_flags()) or 'no avx512f/bf16/amx'}; "
          f"{precision.explain(args.precision, amp)}; width {args.width}, batch "
          f"{args.batch_size}, {args.steps} timed steps", flush=True)
    seconds = {}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        net = recipe.build_model(ModelParams(width_multiplier=args.width, logit_scale=1.0), cpu)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        stepped = torch.compile(net) if name == "compiled" else net
        seconds[name] = step_seconds(stepped, opt, x, y, amp, args.steps)
        first, steady = seconds[name]
        print(f"  {name}: first step {first:.1f} s, then {args.batch_size / steady:,.1f} img/s",
              flush=True)
    (first_e, eager), (first_c, compiled) = seconds["eager"], seconds["compiled"]
    compile_s = first_c - first_e
    saved_s = SPEC_IMAGES / args.batch_size * (eager - compiled)
    print(f"compiled / eager speed: {eager / compiled:.3f}; compile time about {compile_s:.0f} s; "
          f"over a spec run ({SPEC_IMAGES:,} images) it would save {saved_s:,.0f} s: "
          + ("pays" if saved_s > compile_s else "does not pay"))


if __name__ == "__main__":
    main()
