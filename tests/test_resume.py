"""Interruption and resume of the train stage: SIGTERM mid-run leaves no complete-looking
output; the next run resumes from the per-epoch checkpoint and ends exactly where an
uninterrupted run ends (CPU, same seed); a changed param discards the checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, tiny_arrays

ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}


def _workdir(tmp_path: Path, name: str, **train) -> Path:
    work = tmp_path / name
    (work / "data/cifar10").mkdir(parents=True)
    arrays = tiny_arrays(n_train=1024, n_test=100, seed=1)
    np.savez(work / "data/cifar10/arrays.npz", **arrays)
    (work / "data/cifar10/meta.json").write_text(json.dumps({"sha256": {"train": "synthetic"}}))
    doc = yaml.safe_load((ROOT / "params.yaml").read_text())
    doc["model"]["width_multiplier"] = 0.125
    doc["train"].update({"epochs": 4, "peak_epoch": 1, "batch_size": 64, "max_lr": 0.005,
                         "device": "cpu", "num_workers": 0, "ema_decay": 0.0, **train})
    (work / "params.yaml").write_text(yaml.safe_dump(doc))
    return work


def _train(work: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=work, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _metrics(work: Path) -> pd.DataFrame:
    return pd.read_csv(work / "plots/train_history.csv").drop(columns="seconds")


def _interrupt_after_first_checkpoint(work: Path, sig: int) -> subprocess.CompletedProcess:
    proc = _train(work)
    deadline = time.monotonic() + 240
    while not (work / "data/checkpoint.pt").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.05)
    proc.send_signal(sig)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10, "the stage took too long to stop"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    work = _workdir(tmp_path_factory.mktemp("ref"), "uninterrupted")
    out, err = _train(work).communicate(timeout=600)
    assert (work / "data/model.pt").is_file(), err
    return _metrics(work)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupt_leaves_no_complete_output_then_resume_matches(tmp_path, reference, sig, code):
    work = _workdir(tmp_path, "interrupted")
    stopped = _interrupt_after_first_checkpoint(work, sig)
    assert stopped.returncode == code, stopped.stderr
    assert "interrupted by" in stopped.stderr
    assert not (work / "data/model.pt").exists()
    assert not (work / "plots").exists()
    assert not list(work.rglob("*.tmp*"))  # no temporaries left behind

    out, err = _train(work).communicate(timeout=600)
    assert "resuming from data/checkpoint.pt after epoch" in out, out + err
    pd.testing.assert_frame_equal(_metrics(work), reference)


def test_changed_param_discards_the_checkpoint(tmp_path, reference):
    work = _workdir(tmp_path, "changed")
    _interrupt_after_first_checkpoint(work, signal.SIGTERM)
    doc = yaml.safe_load((work / "params.yaml").read_text())
    doc["train"]["max_lr"] = 0.004
    (work / "params.yaml").write_text(yaml.safe_dump(doc))
    out, err = _train(work).communicate(timeout=600)
    assert "is from other params or data; discarded" in out, out + err
    assert len(_metrics(work)) == 4


def test_same_seed_twice_gives_identical_metrics(tmp_path, reference):
    work = _workdir(tmp_path, "again")
    _train(work).communicate(timeout=600)
    pd.testing.assert_frame_equal(_metrics(work), reference)


def test_torch_augment_backend_trains_on_cpu(tmp_path):
    """The CUDA data path (dataset on the device, batched augmentation) runs on CPU too."""
    work = _workdir(tmp_path, "torch_backend", augment_backend="torch", epochs=2, compile=False)
    out, err = _train(work).communicate(timeout=600)
    history = _metrics(work)
    assert history.epoch.tolist() == [1, 2], out + err
    assert history.train_loss.iloc[1] < history.train_loss.iloc[0]


def _fails_with(work: Path, message: str) -> None:
    proc = _train(work)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"train: error: {message}"), err
    assert not (work / "data/model.pt").exists() and not (work / "plots").exists()


def test_auto_max_lr_without_an_lr_finder_result(tmp_path):
    work = _workdir(tmp_path, "auto", max_lr="auto")
    _fails_with(work, "train.max_lr: 'auto' needs the LR range test's result")


def test_batch_size_larger_than_the_training_set(tmp_path):
    work = _workdir(tmp_path, "big_batch", batch_size=2048)
    _fails_with(work, "train.batch_size: 2048 is larger than the 1024 training images")


def test_ema_weights_are_saved_and_an_ema_run_resumes_exactly(tmp_path):
    import torch

    straight = _workdir(tmp_path, "ema_straight", ema_decay=0.9)
    _train(straight).communicate(timeout=600)
    saved = torch.load(straight / "data/model.pt", weights_only=True)["state_dict"]
    ckpt = torch.load(straight / "data/checkpoint.pt", weights_only=False)
    assert torch.equal(saved["fc.weight"], ckpt["ema"]["module.fc.weight"])
    assert not torch.equal(saved["fc.weight"], ckpt["model"]["fc.weight"])

    resumed = _workdir(tmp_path, "ema_resumed", ema_decay=0.9)
    _interrupt_after_first_checkpoint(resumed, signal.SIGTERM)
    _train(resumed).communicate(timeout=600)
    pd.testing.assert_frame_equal(_metrics(resumed), _metrics(straight))


def _learnable(work: Path) -> None:
    """Replace the noise images by ones whose colour gives the class away."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 1024), ("test", 200)):
        y = np.arange(n) % 10
        base = np.stack([(y * 25) % 256, (y * 70) % 256, (255 - y * 25) % 256], 1)
        x = base[:, None, None, :] + rng.integers(-20, 21, (n, 32, 32, 3))
        arrays[f"x_{split}"] = np.clip(x, 0, 255).astype(np.uint8)
        arrays[f"y_{split}"] = y.astype(np.uint8)
    np.savez(work / "data/cifar10/arrays.npz", **arrays)


def test_two_process_ddp_on_cpu_matches_the_single_process_run(tmp_path):
    runs = {}
    for nproc in (1, 2):
        work = _workdir(tmp_path, f"nproc{nproc}", nproc_per_node=nproc, epochs=3)
        _learnable(work)
        proc = _train(work)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out + err
        runs[nproc] = _metrics(work)
        assert sorted(p.name for p in (work / "data").iterdir()) == [
            "checkpoint.pt", "cifar10", "model.pt"]
    two = runs[2].iloc[-1]
    assert "relaunching under torchrun with 2 processes" in out
    assert len(runs[2]) == 3
    assert two.test_acc > 0.5
    assert abs(two.test_acc - runs[1].iloc[-1].test_acc) < 0.15
    assert abs(two.train_loss - runs[1].iloc[-1].train_loss) < 0.3
