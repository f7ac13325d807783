"""Stage train: ResNet-9, Adam, One Cycle -> the model file, the run's metrics, provenance and
curves (the outputs: dvc.yaml, resnet9/paths.py); the progress files after every epoch
(resnet9/live.py). With train.nproc_per_node > 1 it relaunches itself under torchrun
(DistributedDataParallel); rank 0 writes the outputs.

An interrupted single-process run resumes from its checkpoint in .cache/checkpoints/ (not a
DVC output; resnet9/checkpoint.py says where and when), deleted once the run completes."""

import sys
import time

import torch

from resnet9 import (PipelineError, atomic_io, checkpoint, data, distributed, engine, live,
                     lr_range, params, precision, runtime, train_outputs)
from resnet9.engine import FitResult, TrainLoop
from resnet9.params import ModelParams, RecipeParams, TrainParams
from resnet9.paths import META_FILE
from stages import runner


def main() -> None:
    clock = runner.StageClock()
    clock.lap("imports")
    model_p, recipe_p, train_p = params.load("model", "recipe", "train")
    device = runtime.select_device(recipe_p.device)
    max_lr = lr_range.resolve_max_lr(train_p)
    if train_p.nproc_per_node > 1 and not distributed.launched():
        print(f"train: relaunching under torchrun with {train_p.nproc_per_node} processes")
        sys.exit(distributed.relaunch(train_p.nproc_per_node, "stages.train"))
    rank, world, device = (distributed.init(device) if distributed.launched()
                           else (0, 1, device))
    generator = runtime.seed_everything(recipe_p.seed + rank)  # DDP syncs weights from rank 0
    try:
        run(model_p=model_p, recipe_p=recipe_p, train_p=train_p, device=device, max_lr=max_lr,
            generator=generator, rank=rank, world=world, clock=clock)
    finally:
        distributed.finish()


def run(*, model_p: ModelParams, recipe_p: RecipeParams, train_p: TrainParams,
        device: torch.device, max_lr: float, generator: torch.Generator, rank: int, world: int,
        clock: runner.StageClock) -> None:
    """Train on ``device`` as process ``rank`` of ``world`` at ``max_lr`` (the One Cycle
    policy's peak learning rate), the batches drawn with ``generator``, and, on rank 0, write
    the outputs; ``clock`` times the phases."""
    log = print if rank == 0 else (lambda *a, **k: None)
    every_s, keep = checkpoint.every_s(), checkpoint.keep()  # checked before any work
    run_params = params.read()  # for the provenance: params.yaml as this run read it
    train, test = data.load_dataset()
    dataset_sha256 = atomic_io.read_json(META_FILE)["sha256"]
    clock.lap("data")

    loop = engine.build_loop(model_p, recipe_p, train_p, train, test, max_lr=max_lr,
                             generator=generator, device=device, rank=rank, world=world)
    fp = checkpoint.run_fingerprint(model=model_p, recipe=recipe_p, train=train_p, max_lr=max_lr,
                                    data=dataset_sha256, precision=loop.precision.name)
    start, result, saver = resume(loop, fp, every_s=every_s, keep=keep, world=world, log=log)
    progress = live.LiveLog(result) if rank == 0 else None  # after each epoch (resnet9/live.py)
    log(f"train: {train_p.epochs} epochs x {len(loop.train_loader)} steps, batch "
        f"{recipe_p.batch_size}, max_lr {max_lr:.4g}, min_lr {max_lr / train_p.div_factor:.4g}, "
        f"width {model_p.width_multiplier}, on {runtime.describe(device, world)}, "
        f"{precision.explain(recipe_p.precision, loop.precision)}")
    clock.lap("setup")
    t0 = time.perf_counter()
    try:  # after each epoch: the progress files first, then the checkpoint
        result = engine.fit(loop, start_epoch=start, result=result, show=rank == 0,
                            callbacks=[c for c in (progress, saver) if c is not None])
    except KeyboardInterrupt as err:  # say from which epoch the same command resumes
        hint = (saver.resume_hint() if saver is not None
                else f"{world} processes write no checkpoint: the same command starts over")
        raise runner.Interrupted(str(err) or "SIGINT", hint) from None
    except engine.TrainingDiverged as err:
        if saver is not None:
            checkpoint.discard(saver.path)  # resuming it would diverge again
        raise engine.TrainingDiverged(
            f"{err}; max_lr {max_lr:.4g} is {lr_range.max_lr_source(train_p)}: lower it "
            "(train.max_lr: a number)") from None
    clock.lap("epochs")
    if world > 1:  # DDP keeps the parameters in step; say so, or stop if it did not
        if (differ := distributed.weights_differ(loop.net, device)) > 0:
            raise PipelineError(f"the {world} processes ended with different weights (largest "
                                f"difference {differ:.3g}); no model file written")
        log(f"train: the {world} processes ended with the same weights")
    if rank == 0:
        train_outputs.write(
            loop, result, model_p=model_p, recipe_p=recipe_p, train_p=train_p, max_lr=max_lr,
            images=len(train) // world * world,  # DDP deals out all but len(train) % world
            wall_seconds=time.perf_counter() - t0, run_params=run_params,
            dataset_sha256=dataset_sha256, stage_seconds=clock.seconds(), progress=progress,
            checkpoint_file=saver.path if saver is not None else None)
        clock.lap("outputs")
        log(clock.line("train"))


def resume(loop: TrainLoop, fp: str, *, every_s: float, keep: int, world: int, log
           ) -> tuple[int, FitResult | None, checkpoint.Saver | None]:
    """Where the run starts: ``(epochs already done, the history so far or None, the Saver of
    its checkpoints or None)``. One process resumes from the checkpoint of fingerprint ``fp``
    when there is one (after deleting other runs' but the ``keep`` newest) and saves the next
    at most every ``every_s`` seconds; ``world`` > 1 processes start over and save none (their
    per-rank RNG streams are not checkpointed). Says what it did through ``log``."""
    if world > 1:
        log(f"train: {world} processes: no resume, training from scratch")
        return 0, None, None
    ckpt = checkpoint.path_for(fp)
    pruned = checkpoint.prune(ckpt, keep)
    if pruned:
        log(f"train: deleted {len(pruned)} old checkpoint(s) of other runs, keeping the {keep} "
            f"most recent ({checkpoint.KEEP_ENV}): {', '.join(p.name for p in pruned)}")
    start, result, how = checkpoint.resume(ckpt, loop, fp)
    log(f"train: {how}")
    return start, result, checkpoint.Saver(ckpt, loop, every_s, fp, done=start)


if __name__ == "__main__":
    runner.run_stage("train", main)
