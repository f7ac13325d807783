"""Interruption and resume of the train stage: SIGTERM mid-run leaves no complete-looking
output; the next run resumes from the checkpoint in .cache/checkpoints/ and ends exactly where
an uninterrupted run ends (CPU, same seed); a changed param does not resume; a completed run
leaves no checkpoint; an interrupted `dvc exp run -S ...` resumes when run again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import (CKPT_DIR, checkpoints, default_sigint, dvc_env, dvc_repo_for_train,
                      interrupt_after_first_checkpoint, learnable_data, start_train,
                      train_history, train_workdir, wait_for_checkpoint)
from resnet9 import paths, precision

pytestmark = pytest.mark.slow  # real dvc / training subprocesses: not in `make test-fast`


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupt_leaves_no_complete_output_then_resume_matches(tmp_path, reference, sig, code):
    work = train_workdir(tmp_path, "interrupted")
    stopped = interrupt_after_first_checkpoint(work, sig)
    assert stopped.returncode == code, stopped.stderr
    assert "interrupted by" in stopped.stderr
    done = torch.load(checkpoints(work)[0], weights_only=False)["epochs_done"]
    assert (f"train: run the same command again to resume from epoch {done + 1} of 4 "
            f"({CKPT_DIR}/") in stopped.stderr, stopped.stderr
    assert not (work / paths.MODEL_FILE).exists()
    # Only the progress written after every epoch (resnet9/live.py): the epochs done so far.
    assert sorted(p.name for p in (work / "plots").iterdir()) == ["train_history.csv"]
    assert train_history(work).epoch.tolist() == list(range(1, len(train_history(work)) + 1))
    assert not list(work.rglob("*.tmp*"))  # no temporaries left behind

    out, err = start_train(work).communicate(timeout=600)
    assert f"resuming from {CKPT_DIR}/" in out and " after epoch " in out, out + err
    pd.testing.assert_frame_equal(train_history(work), reference)
    assert not (work / CKPT_DIR).exists()  # a completed run deletes its checkpoint


def test_changed_param_does_not_resume_and_keeps_the_other_checkpoint(tmp_path, reference):
    work = train_workdir(tmp_path, "changed")
    interrupt_after_first_checkpoint(work, signal.SIGTERM)
    first = checkpoints(work)
    doc = yaml.safe_load((work / "params.yaml").read_text())
    doc["train"]["max_lr"] = 0.004
    (work / "params.yaml").write_text(yaml.safe_dump(doc))
    out, err = start_train(work).communicate(timeout=600)
    amp = precision.resolve("auto", torch.device("cpu")).name  # recipe.precision auto on this CPU
    assert f"for these params, data and precision ({amp}); training from scratch" in out, out + err
    assert len(train_history(work)) == 4
    assert checkpoints(work) == first  # the first params' run can still resume


def test_same_seed_twice_gives_identical_metrics(tmp_path, reference):
    work = train_workdir(tmp_path, "again")
    start_train(work).communicate(timeout=600)
    pd.testing.assert_frame_equal(train_history(work), reference)


def test_torch_augment_backend_trains_on_cpu(tmp_path):
    """The CUDA data path (dataset on the device, batched augmentation) runs on CPU too."""
    work = train_workdir(tmp_path, "torch_backend", augment_backend="torch", epochs=2, compile=False)
    out, err = start_train(work).communicate(timeout=600)
    history = train_history(work)
    assert history.epoch.tolist() == [1, 2], out + err
    assert history.train_loss.iloc[1] < history.train_loss.iloc[0]


def _fails_with(work: Path, message: str) -> None:
    proc = start_train(work)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"train: error: {message}"), err
    assert not (work / paths.MODEL_FILE).exists() and not (work / "plots").exists()


def test_auto_max_lr_without_an_lr_finder_result(tmp_path):
    work = train_workdir(tmp_path, "auto", max_lr="auto")
    _fails_with(work, "train.max_lr: 'auto' needs the LR range test's result")


def test_batch_size_larger_than_the_training_set(tmp_path):
    work = train_workdir(tmp_path, "big_batch", batch_size=2048)
    _fails_with(work, "recipe.batch_size: 2048 is larger than the 1024 training images")


def _real_subset(work: Path, npz: Path, n_train: int = 1024, n_test: int = 500) -> None:
    """Put a class-stratified subset of the real CIFAR-10 in ``work``'s dataset."""
    from resnet9 import data

    with np.load(npz) as full:
        arrays = dict(full)
    subset = {}
    for split, n in (("train", n_train), ("test", n_test)):
        keep = data.stratified_subset(arrays[f"y_{split}"].ravel().astype(np.int64), n, seed=0)
        subset[f"x_{split}"] = arrays[f"x_{split}"][keep]
        subset[f"y_{split}"] = arrays[f"y_{split}"].ravel()[keep]
    np.savez(work / paths.ARRAYS_FILE, **subset)


def test_a_non_finite_loss_stops_the_stage_naming_max_lr_and_its_source(tmp_path):
    # fp16 overflows within a few steps at max_lr 100 (the largest train.max_lr allows)
    work = train_workdir(tmp_path, "diverges", max_lr=100, precision="fp16", batch_size=32,
                    epochs=2, peak_epoch=1)
    learnable_data(work)
    proc = start_train(work)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, out + err
    lines = [line for line in err.splitlines() if line.startswith("train: error:")]
    assert len(lines) == 1, err
    assert re.fullmatch(r"train: error: loss is (nan|inf) at epoch 1, step \d+ \(lr [\d.]+\); "
                        r"max_lr 100 is train.max_lr in params.yaml: lower it .*", lines[0]), err
    assert not (work / paths.MODEL_FILE).exists() and not (work / paths.TRAIN_METRICS).exists()
    assert not checkpoints(work)  # nothing left to resume into the same divergence


@pytest.mark.parametrize("max_lr, learned", [(80, False), (0.005, True)])
def test_a_run_that_did_not_learn_says_so(tmp_path, cifar_npz, max_lr, learned):
    work = train_workdir(tmp_path, f"lr{max_lr}", max_lr=max_lr, epochs=2, peak_epoch=1)
    _real_subset(work, cifar_npz)
    proc = start_train(work)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    metrics = json.loads((work / paths.TRAIN_METRICS).read_text())
    assert metrics["learned"] is learned, metrics
    assert (work / paths.MODEL_FILE).is_file()  # the outputs are written either way
    warning = [line for line in err.splitlines() if line.startswith("train: warning:")]
    if learned:
        assert not warning, err
    else:
        assert len(warning) == 1, err
        assert re.fullmatch(r"train: warning: test accuracy 0\.\d+ is no better than 1\.5x chance "
                            rf"\(0\.15\): the run did not learn; max_lr {max_lr} is "
                            r"train.max_lr in params.yaml", warning[0]), err


def _test_loss(work: Path, state_dict: dict) -> float:
    """Test loss of the width-0.125 network with ``state_dict`` on ``work``'s test set."""
    import torch

    from resnet9 import data, engine, loaders, recipe
    from resnet9.params import ModelParams

    cpu = torch.device("cpu")
    net = recipe.build_model(ModelParams(width_multiplier=0.125, logit_scale=1.0), cpu)
    net.load_state_dict(state_dict)
    _, test = data.load_dataset(work / paths.DATASET_DIR)
    # Under the precision the stage evaluates in (recipe.precision auto: bf16 on a CPU that runs
    # it natively), since bf16 logits differ from fp32 ones by more than the tolerance below.
    amp = precision.resolve("auto", cpu)
    return engine.score(*engine.predict(net.eval(), loaders.test_loader(test, cpu), cpu, amp))[0]


def test_ema_weights_are_evaluated_and_saved_and_an_ema_run_resumes_exactly(tmp_path):
    import torch

    straight = train_workdir(tmp_path, "ema_straight", ema_decay=0.9)
    start_train(straight).communicate(timeout=600)
    resumed = train_workdir(tmp_path, "ema_resumed", ema_decay=0.9)
    interrupt_after_first_checkpoint(resumed, signal.SIGTERM)
    ckpt = torch.load(checkpoints(resumed)[0], weights_only=False)
    history = train_history(straight)

    # What the stage evaluates after an epoch is the EMA, not the raw weights ...
    ema = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k != "n_averaged"}
    done = ckpt["epochs_done"] - 1
    assert _test_loss(resumed, ema) == pytest.approx(history.test_loss[done], rel=1e-4)
    assert _test_loss(resumed, ckpt["model"]) != pytest.approx(history.test_loss[done], rel=1e-3)
    # ... and what it saves in model.pt.
    saved = torch.load(straight / "data/model.pt", weights_only=True)["state_dict"]
    assert _test_loss(straight, saved) == pytest.approx(history.test_loss.iloc[-1], rel=1e-4)

    start_train(resumed).communicate(timeout=600)
    pd.testing.assert_frame_equal(train_history(resumed), history)
    resumed_saved = torch.load(resumed / "data/model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], resumed_saved[k]) for k in saved)


def test_two_process_ddp_on_cpu_ends_with_equal_weights_within_the_seed_spread(tmp_path):
    """Two gloo processes at seeds 0 and 1 against one process at seeds 0, 1 and 2, all with the
    global batch of 64: every rank ends with the same weights, and the two kinds of run overlap
    in final test accuracy. (On these 200 easy test images one process ends at 0.98-1.0 and two
    at 0.90-1.0: each rank's BatchNorm sees 32 images, and SyncBatchNorm needs CUDA.)"""
    def final_accuracy(name: str, **settings) -> float:
        work = train_workdir(tmp_path, name, epochs=3, **settings)
        learnable_data(work)
        out, err = (proc := start_train(work)).communicate(timeout=900)
        assert proc.returncode == 0, out + err
        assert sorted(p.name for p in (work / "data").iterdir()) == ["cifar10", "model.pt"]
        assert not (work / CKPT_DIR).exists()
        history = train_history(work)
        assert len(history) == 3
        if settings.get("nproc_per_node") == 2:
            assert "relaunching under torchrun with 2 processes" in out
            assert "train: the 2 processes ended with the same weights" in out
        return history.iloc[-1].test_acc

    single = [final_accuracy(f"one{seed}", seed=seed) for seed in (0, 1, 2)]
    two = [final_accuracy(f"two{seed}", seed=seed, nproc_per_node=2) for seed in (0, 1)]
    assert min(single) <= max(two) and min(two) <= max(single), (two, single)
    assert min(two) > 0.5


def test_two_processes_count_each_training_image_once_in_images_per_s(tmp_path):
    """Two gloo processes each train on their half of the 1,024 images (16 steps of 32 a
    rank): an epoch is 1,024 images, not 2,048, so images_per_s is the training set per epoch
    over the seconds, as for one process."""
    work = train_workdir(tmp_path, "ddp_speed", epochs=2, nproc_per_node=2)
    out, err = (proc := start_train(work)).communicate(timeout=900)
    assert proc.returncode == 0, out + err
    assert "train: 2 epochs x 16 steps, batch 64," in out, out
    assert "on cpu x 2 processes, 1 thread, " in out, out
    metrics = json.loads((work / paths.TRAIN_METRICS).read_text())
    assert metrics["images_per_s"] == pytest.approx(1024 * 2 / metrics["train_seconds"])
    assert f"({metrics['images_per_s']:.0f} images/s)" in out


def test_checkpoint_location_follows_dvc_root():
    from resnet9 import checkpoint

    assert checkpoint.path_for("ab" * 32, {}) == Path(".cache/checkpoints/abababababababab.pt")
    queued = {"DVC_ROOT": "/home/me/project"}  # what DVC sets, also in .dvc/tmp/exps/ copies
    assert checkpoint.path_for("ab" * 32, queued) == Path(
        "/home/me/project/.cache/checkpoints/abababababababab.pt")


def test_a_checkpoint_belongs_to_the_precision_run_not_the_setting():
    from resnet9 import checkpoint, params

    model_p, recipe_p, train_p = params.load("model", "recipe", "train")
    def fp(setting, chosen):
        return checkpoint.run_fingerprint(
            model=model_p, recipe=recipe_p.model_copy(update={"precision": setting}),
            train=train_p, max_lr=1e-3, data="ab" * 32, precision=chosen)

    # auto on a CPU without native bf16 resumes with fp32 set by hand, and the other way round
    assert fp("auto", "fp32") == fp("fp32", "fp32")
    # auto on a CPU with native bf16 does not resume a run that trained in fp32
    assert fp("auto", "bf16") != fp("auto", "fp32")
    assert fp("auto", "bf16") == fp("bf16", "bf16")
    # every other param still counts
    assert fp("auto", "fp32") != checkpoint.run_fingerprint(
        model=model_p, recipe=recipe_p, train=train_p, max_lr=2e-3, data="ab" * 32,
        precision="fp32")


def test_checkpoint_interval_from_the_environment():
    from resnet9 import PipelineError, checkpoint

    assert checkpoint.every_s({}) == 60.0
    assert checkpoint.every_s({"RESNET9_CHECKPOINT_EVERY_S": "0"}) == 0.0
    for bad in ("soon", "-1", "inf", "nan"):
        with pytest.raises(PipelineError, match=rf"^RESNET9_CHECKPOINT_EVERY_S: '{bad}' is not "
                                                r"allowed; expected a number of seconds >= 0"):
            checkpoint.every_s({"RESNET9_CHECKPOINT_EVERY_S": bad})


def test_old_checkpoints_of_other_runs_are_pruned_to_the_most_recent(tmp_path):
    from resnet9 import PipelineError, checkpoint

    paths_by_age = []
    for i in range(5):  # oldest first
        path = tmp_path / f"other{i}.pt"
        path.write_bytes(b"x")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
        paths_by_age.append(path)
    current = tmp_path / "current.pt"
    current.write_bytes(b"x")
    os.utime(current, (1, 1))  # the oldest file of all, but this run's: never deleted

    assert checkpoint.prune(current, keep=2) == paths_by_age[:3]
    assert sorted(tmp_path.iterdir()) == sorted([current, *paths_by_age[3:]])
    assert checkpoint.prune(current, keep=0) == paths_by_age[3:]
    assert list(tmp_path.iterdir()) == [current]

    assert checkpoint.keep({}) == checkpoint.KEEP == 3
    assert checkpoint.keep({"RESNET9_CHECKPOINT_KEEP": "0"}) == 0
    for bad in ("all", "-1", "1.5"):
        with pytest.raises(PipelineError, match=rf"^RESNET9_CHECKPOINT_KEEP: '{bad}' is not "):
            checkpoint.keep({"RESNET9_CHECKPOINT_KEEP": bad})


def test_saver_writes_at_most_once_per_interval_and_never_after_the_last_epoch(monkeypatch):
    from types import SimpleNamespace

    from resnet9 import checkpoint

    written = []
    monkeypatch.setattr(checkpoint, "save",
                        lambda path, loop, *, epoch, **kw: written.append(epoch))
    now = [0.0]
    saver = checkpoint.Saver("x.pt", SimpleNamespace(epochs=6), every_s=60, fp="f",
                             clock=lambda: now[0])
    for epoch, seconds in enumerate([25, 25, 25, 70, 10, 100]):  # epoch lengths
        now[0] += seconds
        saver(epoch, None)
    # After epoch 3 (75 s from the start) and epoch 4 (70 s later); epoch 5 ends 10 s later,
    # too soon; epoch 6 is the last: the run completes, so no checkpoint. (0-based below.)
    assert written == [2, 3]

    written.clear()
    every_epoch = checkpoint.Saver("x.pt", SimpleNamespace(epochs=3), every_s=0, fp="f",
                                   clock=lambda: 0.0)
    for epoch in range(3):
        every_epoch(epoch, None)
    assert written == [0, 1]


def test_the_resume_hint_names_the_epoch_or_says_there_is_no_checkpoint(monkeypatch):
    from types import SimpleNamespace

    from resnet9 import checkpoint

    monkeypatch.setattr(checkpoint, "save", lambda *a, **kw: None)
    now = [0.0]
    saver = checkpoint.Saver("c/x.pt", SimpleNamespace(epochs=24), every_s=60, fp="f",
                             clock=lambda: now[0])
    assert saver.resume_hint() == ("no checkpoint yet (one is written at the end of an epoch, "
                                   "at most once per 60 s of training): the same command starts "
                                   "from epoch 1")
    now[0] = 30.0
    saver(0, None)  # too soon: still none
    assert saver.resume_hint().startswith("no checkpoint yet")
    now[0] = 65.0
    saver(1, None)
    assert saver.resume_hint() == ("run the same command again to resume from epoch 3 of 24 "
                                   "(c/x.pt)")
    resumed = checkpoint.Saver("c/x.pt", SimpleNamespace(epochs=24), every_s=60, fp="f", done=7)
    assert "resume from epoch 8 of 24" in resumed.resume_hint()  # before its first write


# ---- the same, under real `dvc exp run` in a temporary git repo on real CIFAR-10 ------------

EXP_RUN = ("dvc", "exp", "run", "-S", "train.max_lr=0.005", "-S", "recipe.seed=1")


def _exp_run(repo: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(EXP_RUN, cwd=repo, env=dvc_env(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _results(repo: Path) -> tuple[pd.DataFrame, dict]:
    return train_history(repo), json.loads((repo / paths.EVALUATE_METRICS).read_text())


def test_interrupted_dvc_exp_run_resumes_with_the_same_command(tmp_path, cifar_npz):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) once epoch 1's checkpoint
    is written, then the very same `dvc exp run -S ...`: it resumes at epoch 2 and ends with
    the metrics of an uninterrupted run of that command."""
    straight = dvc_repo_for_train(tmp_path, "straight", cifar_npz)
    _exp_run(straight)
    assert not (straight / CKPT_DIR).exists()

    repo = dvc_repo_for_train(tmp_path, "interrupted", cifar_npz)
    proc = subprocess.Popen(EXP_RUN, cwd=repo, env=dvc_env(), preexec_fn=default_sigint,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_for_checkpoint(repo, proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out
    assert "train: interrupted by SIGINT" in out, out
    # from epoch 2 as a rule; on a loaded machine epoch 2's checkpoint may land before the signal
    hint = re.search(r"train: run the same command again to resume from epoch (\d) of 3 \(", out)
    assert hint, out
    assert not (repo / paths.MODEL_FILE).exists()

    again = _exp_run(repo)
    assert "train: resuming from " in again.stdout, again.stdout
    done = int(hint.group(1)) - 1
    assert f"after epoch {done}\n" in again.stdout, again.stdout
    assert "epoch   1/3" not in again.stdout  # epoch 1 was not trained again
    history, evaluated = _results(repo)
    pd.testing.assert_frame_equal(history, _results(straight)[0])
    assert evaluated == _results(straight)[1]
    assert not (repo / CKPT_DIR).exists()  # the completed run deleted its checkpoint
