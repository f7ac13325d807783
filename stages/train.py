"""Stage train: ResNet-9, Adam, One Cycle -> data/model.pt, metrics/train.json (the LRs used,
final train loss and accuracy, speed), metrics/provenance.json, plots/train_history.csv and
metrics/live/metrics.json (DVCLive; both after every epoch: resnet9/live.py),
plots/lr_schedule.csv. With train.nproc_per_node > 1 it relaunches itself under torchrun
(DistributedDataParallel); rank 0 writes the outputs.

An interrupted single-process run resumes from its checkpoint in .cache/checkpoints/ (not a
DVC output; resnet9/checkpoint.py says where and when), deleted once the run completes."""

import sys
import time

import pandas as pd
import torch

from resnet9 import (artifacts, checkpoint, cli, data, distributed, engine, live, params,
                     precision, provenance, recipe, schedule)
from resnet9.data import DATASET_DIR, META_FILE
from resnet9.recipe import MODEL_FILE, PROVENANCE_FILE, TRAIN_METRICS


def main() -> None:
    model_p, train_p = params.load("model", "train")
    device = engine.select_device(train_p.device)
    max_lr = recipe.resolve_max_lr(train_p)
    if train_p.nproc_per_node > 1 and not distributed.launched():
        print(f"train: relaunching under torchrun with {train_p.nproc_per_node} processes")
        sys.exit(distributed.relaunch(train_p.nproc_per_node, "stages.train"))
    rank, world, device = (distributed.init(device) if distributed.launched()
                           else (0, 1, device))
    try:
        run(model_p, train_p, device, max_lr, rank, world)
    finally:
        distributed.finish()


def run(model_p, train_p, device, max_lr, rank, world) -> None:
    main_rank = rank == 0
    every_s = checkpoint.every_s()  # checked before any work
    run_params = params.read()  # for the provenance: params.yaml as this run read it
    train, test = data.load_dataset(DATASET_DIR)
    if world > 1:  # equal shards, so every rank takes the same number of steps
        train = distributed.shard(train, rank, world, seed=train_p.seed)
    generator = engine.seed_everything(train_p.seed + rank)  # DDP syncs weights from rank 0
    train_loader = recipe.train_loader(
        train, train_p.model_copy(update={"batch_size": train_p.batch_size // world}), device,
        generator)
    test_loader = recipe.test_loader(test, 1024, device, train_p.num_workers)

    net = recipe.build_model(model_p, device)
    min_lr = max_lr / train_p.div_factor  # LRMIN: the One Cycle policy's start and end
    opt = recipe.optimizer(net, min_lr, train_p.weight_decay,
                           train_p.decay_bn_and_bias)
    ema = recipe.ema(net, train_p.ema_decay)
    evaluated = ema.module if ema is not None else net  # the EMA weights when ema_decay > 0
    amp = precision.resolve(train_p.precision, device)
    sched = schedule.one_cycle(opt, max_lr, train_p.epochs, len(train_loader),
                               train_p.peak_epoch, train_p.div_factor)
    dataset_sha256 = artifacts.read_json(DATASET_DIR / META_FILE)["sha256"]
    fp = checkpoint.fingerprint(model=model_p, train=train_p, max_lr=max_lr, data=dataset_sha256)
    trained = torch.compile(net) if train_p.compile else net  # shares net's parameters
    if world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(trained)
    state = dict(model=net, optimizer=opt, scheduler=sched, generator=generator, ema=ema,
                 scaler=amp.scaler,
                 transform=getattr(getattr(train_loader, "dataset", None), "transform", None))
    ckpt = checkpoint.path_for(fp)
    if world == 1:
        start, result, how = checkpoint.resume(ckpt, fp=fp, **state)
        on_epoch_end = checkpoint.Saver(ckpt, train_p.epochs, every_s, fp=fp,
                                        **state)
    else:  # per-rank RNG streams are not checkpointed: start over, write none
        start, result, how = 0, None, f"{world} processes: no resume, training from scratch"
        on_epoch_end = None
    progress = live.LiveLog(result) if main_rank else None  # after each epoch (resnet9/live.py)
    on_epoch_end = live.chain(progress, on_epoch_end)
    log = print if main_rank else (lambda *a, **k: None)
    log(f"train: {how}")
    log(f"train: {train_p.epochs} epochs x {len(train_loader)} steps, batch "
        f"{train_p.batch_size}, max_lr {max_lr:.4g}, min_lr {min_lr:.4g}, "
        f"width {model_p.width_multiplier}, on {device} x {world}, {amp.name}")
    t0 = time.perf_counter()
    result = engine.fit(
        trained, train_loader, test_loader, opt, sched, recipe.criterion(train_p), device,
        train_p.epochs, start_epoch=start, result=result, ema=ema, show=main_rank,
        eval_model=evaluated, precision=amp,  # eval_model: not the DDP wrapper
        on_epoch_end=on_epoch_end)
    if not main_rank:
        return
    seconds = sum(h.seconds for h in result.history)  # resumed epochs count once

    prov = provenance.collect(params=run_params, dataset_sha256=dataset_sha256,
                              train_seconds=seconds, device=device)
    recipe.save_trained(MODEL_FILE, evaluated, model_p, train_params=train_p.model_dump(),
                        max_lr=max_lr, train_seconds=seconds,
                        wall_seconds_this_run=time.perf_counter() - t0, provenance=prov)
    artifacts.write_csv("plots/lr_schedule.csv",
                        pd.DataFrame({"step": range(len(result.lrs)), "lr": result.lrs}))
    last = result.history[-1]
    metrics = {  # metrics/train.json, built here only: the LRs this run used and how it went
        "max_lr": max_lr,
        "min_lr": min_lr,
        "train_loss": last.train_loss,  # last epoch, mean cross-entropy per image
        "train_acc": last.train_acc,  # last epoch, top-1 fraction on augmented images
        "train_seconds": seconds,  # every epoch's wall time (training + test pass)
        "images_per_s": len(train) * world * train_p.epochs / seconds,  # training images
    }
    artifacts.write_json(TRAIN_METRICS, metrics)
    artifacts.write_json(PROVENANCE_FILE, prov)  # the same as model.pt's (predict --info)
    progress.close()  # plots/train_history.csv: written after every epoch
    if world == 1:
        checkpoint.discard(ckpt)  # the run is complete: nothing left to resume
    log(f"train: test accuracy {last.test_acc:.4f} after {train_p.epochs} epochs in "
        f"{seconds:.1f} s ({metrics['images_per_s']:.0f} images/s); wrote {MODEL_FILE}, "
        f"{TRAIN_METRICS}, {PROVENANCE_FILE}, plots/train_history.csv, plots/lr_schedule.csv")


if __name__ == "__main__":
    cli.run("train", main)
