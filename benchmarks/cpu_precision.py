"""fp32 against bf16 autocast on this CPU: the compute ceiling of a training step in each, and
what ``recipe.precision: auto`` picks here (resnet9/precision.py). Not a test.

The measurement is speed.py's (a): forward + backward + Adam on one batch already in memory,
channels_last, through resnet9.engine.train_one_epoch, after warm-up steps. The CPU's model
name and its bf16-relevant flags (/proc/cpuinfo) are printed with the figures, since bf16 is
fast only on CPUs with AVX512-BF16 or AMX. Run from the repository root:

    python benchmarks/cpu_precision.py --width 0.25 --steps 6
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402  (the sibling benchmark: its compute-only measurement)

from resnet9 import data, precision  # noqa: E402

BF16_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """The flags of :data:`BF16_FLAGS` that /proc/cpuinfo lists for this CPU."""
    try:
        line = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags"))
    except (OSError, StopIteration):
        return []
    have = set(line.split(":", 1)[1].split())
    return [f for f in BF16_FLAGS if f in have]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per precision")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--data", default=str(speed.ROOT.parent / "shared/data/cifar10.npz"))
    args = ap.parse_args()
    cpu = torch.device("cpu")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    with np.load(args.data) as npz:
        split = data.Split(npz["x_train"][:args.batch_size],
                           npz["y_train"][:args.batch_size].astype(np.int64))
    info = speed.machine(cpu)
    print(f"{info['cpu']}, {info['cpu_cores']} cores, torch {info['torch']}, "
          f"flags: {' '.join(cpu_flags()) or 'none of ' + ', '.join(BF16_FLAGS)}; "
          f"native bf16: {precision.cpu_native_bf16()}; auto picks "
          f"{precision.explain('auto', precision.resolve('auto', cpu))}")
    print(f"ResNet-9 width {args.width}, batch {args.batch_size}, {args.steps} timed steps "
          f"after {args.warmup} warm-up", flush=True)
    ips = {}
    for name in ("fp32", "bf16"):
        args.precision = name
        ips[name] = args.steps * args.batch_size / speed.compute_only(split, args, cpu)
        print(f"  {name}: {ips[name]:,.1f} img/s", flush=True)
    print(f"bf16 / fp32 = {ips['bf16'] / ips['fp32']:.2f}")


if __name__ == "__main__":
    main()
