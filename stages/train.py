"""Stage train: ResNet-9, Adam, One Cycle -> the model file, the run's metrics, provenance and
curves (the outputs: dvc.yaml, resnet9/paths.py); the progress files after every epoch
(resnet9/live.py). With train.nproc_per_node > 1 it relaunches itself under torchrun
(DistributedDataParallel); rank 0 writes the outputs.

An interrupted single-process run resumes from its checkpoint in .cache/checkpoints/ (not a
DVC output; resnet9/checkpoint.py says where and when), deleted once the run completes."""

import sys
import time

import pandas as pd
import torch

from resnet9 import (PipelineError, atomic_io, checkpoint, data, distributed, engine, live,
                     loaders, model_file, params, precision, provenance, recipe, runtime,
                     schedule)
from resnet9.params import ModelParams, RecipeParams, TrainParams
from resnet9.paths import (LR_SCHEDULE, META_FILE, MODEL_FILE, PROVENANCE_FILE, TRAIN_HISTORY,
                           TRAIN_METRICS)
from stages import runner


def main() -> None:
    clock = runner.StageClock()
    clock.lap("imports")
    model_p, recipe_p, train_p = params.load("model", "recipe", "train")
    device = runtime.select_device(recipe_p.device)
    max_lr = recipe.resolve_max_lr(train_p)
    if train_p.nproc_per_node > 1 and not distributed.launched():
        print(f"train: relaunching under torchrun with {train_p.nproc_per_node} processes")
        sys.exit(distributed.relaunch(train_p.nproc_per_node, "stages.train"))
    rank, world, device = (distributed.init(device) if distributed.launched()
                           else (0, 1, device))
    try:
        run(model_p=model_p, recipe_p=recipe_p, train_p=train_p, device=device, max_lr=max_lr,
            rank=rank, world=world, clock=clock)
    finally:
        distributed.finish()


def run(*, model_p: ModelParams, recipe_p: RecipeParams, train_p: TrainParams,
        device: torch.device, max_lr: float, rank: int, world: int,
        clock: runner.StageClock) -> None:
    """Train on ``device`` as process ``rank`` of ``world`` at ``max_lr`` (the One Cycle
    policy's peak learning rate) and, on rank 0, write the outputs; ``clock`` times the
    phases."""
    main_rank = rank == 0
    every_s, keep = checkpoint.every_s(), checkpoint.keep()  # checked before any work
    run_params = params.read()  # for the provenance: params.yaml as this run read it
    train, test = data.load_dataset()
    generator = runtime.seed_everything(recipe_p.seed + rank)  # DDP syncs weights from rank 0
    # under DDP, each epoch's shuffle is dealt out among the ranks (the same on every rank)
    share = (distributed.sampler(len(train), rank, world, recipe_p.seed) if world > 1
             else None)
    train_loader = loaders.train_loader(train, recipe_p, device, generator, world, share)
    clock.lap("data")

    net = recipe.build_model(model_p, device)
    min_lr = max_lr / train_p.div_factor  # LRMIN: the One Cycle policy's start and end
    opt = recipe.optimizer(net, min_lr, recipe_p)
    stepped = torch.compile(net) if train_p.compile else net  # shares net's parameters
    if world > 1:
        stepped = torch.nn.parallel.DistributedDataParallel(stepped)
    loop = engine.TrainLoop(
        net=net, optimizer=opt, criterion=recipe.criterion(recipe_p),
        scheduler=schedule.one_cycle(opt, max_lr, train_p.epochs, len(train_loader),
                                     train_p.peak_epoch, train_p.div_factor),
        train_loader=train_loader,
        test_loader=loaders.test_loader(test, device, num_workers=recipe_p.num_workers),
        device=device, epochs=train_p.epochs,
        precision=precision.resolve(recipe_p.precision, device),
        ema=recipe.ema(net, train_p.ema_decay), stepped=stepped)

    dataset_sha256 = atomic_io.read_json(META_FILE)["sha256"]
    fp = checkpoint.fingerprint(model=model_p, recipe=recipe_p, train=train_p, max_lr=max_lr,
                                data=dataset_sha256)
    ckpt = checkpoint.path_for(fp)
    if world == 1:
        pruned = checkpoint.prune(ckpt, keep)
        if pruned:
            print(f"train: deleted {len(pruned)} old checkpoint(s) of other runs, keeping the "
                  f"{keep} most recent ({checkpoint.KEEP_ENV}): "
                  f"{', '.join(p.name for p in pruned)}")
        start, result, how = checkpoint.resume(ckpt, loop, fp)
        saver = checkpoint.Saver(ckpt, loop, every_s, fp, done=start)
    else:  # per-rank RNG streams are not checkpointed: start over, write none
        start, result, how = 0, None, f"{world} processes: no resume, training from scratch"
        saver = None
    progress = live.LiveLog(result) if main_rank else None  # after each epoch (resnet9/live.py)
    # after each epoch: the progress files first, then the checkpoint
    callbacks = [c for c in (progress, saver) if c is not None]
    log = print if main_rank else (lambda *a, **k: None)
    log(f"train: {how}")
    log(f"train: {train_p.epochs} epochs x {len(train_loader)} steps, batch "
        f"{recipe_p.batch_size}, max_lr {max_lr:.4g}, min_lr {min_lr:.4g}, "
        f"width {model_p.width_multiplier}, on {device} x {world}, "
        f"{precision.explain(recipe_p.precision, loop.precision)}")
    clock.lap("setup")
    t0 = time.perf_counter()
    try:
        result = engine.fit(loop, start_epoch=start, result=result, callbacks=callbacks,
                            show=main_rank)
    except KeyboardInterrupt as err:  # say from which epoch the same command resumes
        hint = (saver.resume_hint() if saver is not None
                else f"{world} processes write no checkpoint: the same command starts over")
        raise runner.Interrupted(str(err) or "SIGINT", hint) from None
    except engine.TrainingDiverged as err:
        if world == 1:
            checkpoint.discard(ckpt)  # resuming it would diverge again
        raise engine.TrainingDiverged(
            f"{err}; max_lr {max_lr:.4g} is {recipe.max_lr_source(train_p)}: lower it "
            "(train.max_lr: a number)") from None
    clock.lap("epochs")
    if world > 1:  # DDP keeps the parameters in step; say so, or stop if it did not
        differ = distributed.weights_differ(loop.net, device)
        if differ > 0:
            raise PipelineError(f"the {world} processes ended with different weights (largest "
                                f"difference {differ:.3g}); no model file written")
        log(f"train: the {world} processes ended with the same weights")
    if not main_rank:
        return
    seconds = sum(h.seconds for h in result.history)  # resumed epochs count once

    prov = provenance.collect(params=run_params, dataset_sha256=dataset_sha256,
                              train_seconds=seconds, device=device,
                              precision=loop.precision.name, cpu=precision.cpu_capability())
    # Where this stage's time went until its outputs (runner.StageClock): in the provenance,
    # not in metrics/train.json, whose six more columns would crowd `dvc exp show`.
    prov["stage_seconds"] = clock.seconds()
    model_file.save_trained(MODEL_FILE, loop.evaluated, model_p,
                            recipe_params=recipe_p.model_dump(),
                            train_params=train_p.model_dump(), max_lr=max_lr,
                            train_seconds=seconds,
                            wall_seconds_this_run=time.perf_counter() - t0, provenance=prov)
    atomic_io.write_csv(LR_SCHEDULE,
                        pd.DataFrame({"step": range(len(result.lrs)), "lr": result.lrs}))
    last = result.history[-1]
    metrics = {  # metrics/train.json, built here only: the LRs this run used and how it went
        "max_lr": max_lr,
        "min_lr": min_lr,
        "train_loss": last.train_loss,  # last epoch, mean cross-entropy per image
        "train_acc": last.train_acc,  # last epoch, top-1 fraction on augmented images
        "train_seconds": seconds,  # every epoch's wall time (training + test pass)
        "images_per_s": len(train) * world * train_p.epochs / seconds,  # training images
        "learned": recipe.learned(last.test_acc),  # false: no better than 1.5x chance
    }
    atomic_io.write_json(PROVENANCE_FILE, prov)  # the same as model.pt's (predict --info)
    progress.close()  # plots/train_history.csv: written after every epoch
    if world == 1:
        checkpoint.discard(ckpt)  # the run is complete: nothing left to resume
    atomic_io.write_json(TRAIN_METRICS, metrics)
    clock.lap("outputs")
    if not metrics["learned"]:
        print(f"train: warning: test accuracy {last.test_acc:.4f} is no better than "
              f"{recipe.LEARNED_OVER_CHANCE:g}x chance ({recipe.learned_threshold():.2f}): the run "
              f"did not learn; max_lr {max_lr:.4g} is {recipe.max_lr_source(train_p)}",
              file=sys.stderr)
    log(f"train: test accuracy {last.test_acc:.4f} after {train_p.epochs} epochs in "
        f"{seconds:.1f} s ({metrics['images_per_s']:.0f} images/s); wrote {MODEL_FILE}, "
        f"{TRAIN_METRICS}, {PROVENANCE_FILE}, {TRAIN_HISTORY}, {LR_SCHEDULE}")
    log(clock.line("train"))


if __name__ == "__main__":
    runner.run_stage("train", main)
