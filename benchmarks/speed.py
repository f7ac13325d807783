"""Training throughput of ResNet-9 on CIFAR-10: images/s and achieved FLOP/s. Not a test.

  (a) compute: forward + backward + Adam step on one batch already on the device (the ceiling),
      through resnet9.engine.train_one_epoch: channels_last, the --precision autocast (auto:
      bf16 on CUDA capability >= 8.0, fp16 with GradScaler below; on a CPU bf16 where it is
      native, AVX512-BF16 or AMX, else fp32: resnet9.precision);
  (b) ours, end to end: the same train_one_epoch over the recipe's loader (albumentations
      DataLoader, resnet9.loaders.train_loader) on CPU, resnet9.loaders.DeviceLoader on CUDA;
  (c) baseline "the usual way": albumentations Compose per image in a DataLoader with
      num_workers=2 and default settings, NCHW float32, no channels_last, no autocast.

FLOP/s counts a training step as 3x the forward cost, the forward cost being 2 x the
multiply-adds torchinfo reports for one image. Run from the repository root:

    python benchmarks/speed.py --device cpu --width 0.25
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
import torch
import torchinfo
from torch import nn

from resnet9 import augment, data, engine, loaders, params, precision, preprocess, recipe, schedule
from resnet9.model import INPUT_SIZE, ResNet9, ResNet9Config
from resnet9.params import ModelParams

ROOT = Path(__file__).resolve().parents[1]
LR = 1e-3  # any stable LR: speed does not depend on it


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_flops(width: float) -> float:
    """FLOPs of one image's forward pass: 2 x torchinfo's multiply-adds."""
    net = ResNet9(ResNet9Config(width_multiplier=width))
    return 2.0 * torchinfo.summary(net, input_size=(1, 3, *INPUT_SIZE), verbose=0).total_mult_adds


def machine(device: torch.device) -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "-"
    return {"cpu": cpu, "cpu_cores": str(len(os.sched_getaffinity(0))),
            "torch_threads": str(torch.get_num_threads()), "gpu": gpu, "torch": torch.__version__}


def ours(split: data.Split, args, device: torch.device, batches) -> float:
    """Seconds for ``args.steps`` steps of engine.train_one_epoch over ``batches`` (an iterable
    of at least warmup + steps batches), after ``args.warmup`` untimed steps."""
    torch.manual_seed(0)
    model = recipe.build_model(ModelParams(width_multiplier=args.width, logit_scale=1.0), device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    it = iter(batches)
    loop = engine.TrainLoop(
        net=model, optimizer=opt, criterion=nn.CrossEntropyLoss(),
        scheduler=schedule.one_cycle(opt, LR, epochs=1, steps_per_epoch=args.warmup + args.steps,
                                     peak_epoch=0.3, div_factor=10.0),
        train_loader=itertools.islice(it, args.warmup), test_loader=(), device=device, epochs=1,
        precision=precision.resolve(args.precision, device))
    engine.train_one_epoch(loop, 0)
    sync(device)
    t0 = time.perf_counter()
    loop.train_loader = itertools.islice(it, args.steps)
    engine.train_one_epoch(loop, 0)  # reads the loss back as the train stage does: syncs
    sync(device)
    return time.perf_counter() - t0


def compute_only(split, args, device) -> float:
    x = preprocess.normalize(torch.as_tensor(split.x[:args.batch_size]).to(device))
    y = torch.as_tensor(split.y[:args.batch_size]).to(device)
    return ours(split, args, device, itertools.repeat((x, y)))


def end_to_end(split, args, device) -> float:
    gen = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        loader = loaders.DeviceLoader(split, args.batch_size, device, generator=gen)
    else:
        recipe_p = params.parse("recipe", {**params.read(ROOT / "params.yaml")["recipe"],
                                           "batch_size": args.batch_size,
                                           "device": device.type})
        loader = loaders.train_loader(split, recipe_p, device, gen)
    return ours(split, args, device, loader)


def baseline(split, args, device) -> float:
    """The usual way: per-image albumentations in 2 workers, fp32 NCHW, loss.item() per step."""
    torch.manual_seed(0)
    model = ResNet9(ResNet9Config(width_multiplier=args.width)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    dataset = loaders.AugmentedDataset(split, augment.train_transform())
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         num_workers=2)
    it = iter(loader)
    model.train()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(device)
            t0 = time.perf_counter()
        x, y = next(it)
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        running = loss.item()  # noqa: F841  (what such loops print)
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--precision", choices=params.PRECISIONS, default="auto",
                    help="as recipe.precision (auto: bf16 or fp16 on CUDA by capability; on a CPU "
                         "bf16 where native, else fp32)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: the CPU cores this process may use)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10.npz"),
                    help="Keras-layout .npz with x_train, y_train")
    ap.add_argument("--out", default=None,
                    help="CSV to write (default benchmarks/results/speed-<device>.csv)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    with np.load(args.data) as npz:
        split = data.Split(npz["x_train"], npz["y_train"].astype(np.int64))
    if (args.warmup + args.steps) * args.batch_size > len(split):
        ap.error("warmup + steps batches must fit in one epoch of the training set")

    flops = 3 * forward_flops(args.width)  # per image, one training step
    info = machine(device)
    amp = precision.resolve(args.precision, device).name
    print(f"ResNet-9 width {args.width}, batch {args.batch_size}, {args.steps} timed steps "
          f"after {args.warmup} warm-up, {args.device}, {amp} (a, b); "
          f"{flops / 3 / 2 / 1e6:.1f} M MACs/img fwd")
    print(" | ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    runs = {"a_compute": compute_only, "b_ours_end_to_end": end_to_end,
            "c_baseline_usual": baseline}
    ips = {}
    for name, fn in runs.items():
        ips[name] = args.steps * args.batch_size / fn(split, args, device)
        print(f"  {name}: {ips[name]:,.0f} img/s", flush=True)

    a, b, c = ips.values()
    rows = [{"measurement": k, "images_per_s": round(v, 1),
             "tflop_per_s": round(v * flops / 1e12, 4),
             "ratio_to_a": round(v / a, 3), "ratio_to_c": round(v / c, 3)} for k, v in ips.items()]
    print(f"\n{'measurement':<20} {'img/s':>10} {'TFLOP/s':>9} {'/a':>6} {'/c':>6}")
    for r in rows:
        print(f"{r['measurement']:<20} {r['images_per_s']:>10,.0f} {r['tflop_per_s']:>9.4f} "
              f"{r['ratio_to_a']:>6.2f} {r['ratio_to_c']:>6.2f}")
    print(f"b/a = {b / a:.2f} (share of the compute ceiling), b/c = {b / c:.2f} (speed-up)")

    out = Path(args.out or ROOT / f"benchmarks/results/speed-{args.device}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    common = {"device": args.device, "precision": amp, "width": args.width,
              "batch_size": args.batch_size,
              "steps": args.steps, "warmup": args.warmup, "train_flop_per_image": flops, **info}
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0], *common])
        w.writeheader()
        w.writerows({**r, **common} for r in rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
