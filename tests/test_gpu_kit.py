"""The GPU kit on the CPU: scripts/gpu_measure.sh where dvc, dvclive and onnx cannot be
imported (as on the GPU machine: ../shared/gpu/README.md), then scripts/adopt_gpu_run.py,
which makes the run it brought back the committed reference (issue 20, part 3)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, commit_all, copy_project, set_params, sh

# What the GPU machine lacks. A package of the same name first on PYTHONPATH makes its import
# fail here as it fails there (a finder that hides them breaks torch's own probing for onnx).
ABSENT = ("dvc", "dvclive", "onnx", "onnxruntime")


def without_absent(folder: Path) -> Path:
    for name in ABSENT:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError({f'No module named {name} (not on the GPU machine)'!r}, "
            f"name={name!r})\n")
    return folder


def project(base: Path, cifar_npz: Path) -> Path:
    """A git repo of the project with tiny params and the kit's scripts."""
    repo = copy_project(base)
    for script in ("gpu_measure.sh", "adopt_gpu_run.py"):
        (repo / "scripts").mkdir(exist_ok=True)
        shutil.copy2(ROOT / "scripts" / script, repo / "scripts" / script)
    set_params(repo, data={"source": str(cifar_npz), "train_subset": 1000, "test_subset": 500},
               model={"width_multiplier": 0.125}, lr_find={"num_iter": 10},
               recipe={"batch_size": 128}, train={"epochs": 2, "peak_epoch": 1})
    sh(repo, "git", "init", "-q")
    commit_all(repo, "project")
    return repo


def adopt_module():
    """scripts/adopt_gpu_run.py imported, for its map of where a run keeps each output."""
    spec = importlib.util.spec_from_file_location("adopt_gpu_run",
                                                  ROOT / "scripts" / "adopt_gpu_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def adopt(repo: Path, files_at: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return sh(repo, sys.executable, "scripts/adopt_gpu_run.py", str(files_at), *args, check=False,
              **env)


@pytest.mark.slow
def test_gpu_run_without_dvc_becomes_the_committed_reference(tmp_path, cifar_npz):
    repo = project(tmp_path / "here", cifar_npz)
    # The GPU machine's copy of the working tree: no .git, the commit in .gpu3/COMMIT.
    gpu = tmp_path / "gpu"
    shutil.copytree(repo, gpu, ignore=shutil.ignore_patterns(".git"))
    commit = sh(repo, "git", "rev-parse", "--short", "HEAD").stdout.strip()
    (gpu / ".gpu3").mkdir()
    (gpu / ".gpu3" / "COMMIT").write_text(commit + "\n")
    out = tmp_path / "out"
    measure = sh(gpu, "bash", "scripts/gpu_measure.sh", check=False,
                 RUNS="seed0", OUT=str(out), R=str(tmp_path / "runs"), NPZ=str(cifar_npz),
                 PYTHONPATH=str(without_absent(tmp_path / "absent")))
    assert measure.returncode == 0, measure.stdout[-3000:]
    summary = (out / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| seed0 |"))
    assert "FAILED" not in row and "top-1 0." in row, summary
    assert f"commit {commit}" in summary
    with tarfile.open(out / "results.tgz") as tgz:
        train_log = tgz.extractfile("./seed0/train.log").read().decode()
    assert "dvclive is not installed" in train_log  # says what it skipped, and ran on

    assert not (repo / "data" / "model.pt").exists()
    done = adopt(repo, out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Running stage 'analyze'" in done.stdout and "Running stage 'export'" in done.stdout
    for stage in ("download", "lr_find", "train", "evaluate"):
        assert f"Running stage '{stage}'" not in done.stdout  # recorded, not rerun
    assert "up to date" in sh(repo, "dvc", "status").stdout
    with tarfile.open(out / "results.tgz") as tgz:
        theirs = json.load(tgz.extractfile("./seed0/metrics/evaluate.json"))
    assert json.loads((repo / "metrics" / "evaluate.json").read_text()) == theirs

    # A fresh clone of the commit that records it misses the outputs; nothing else changed.
    commit_all(repo, "the GPU run as the reference")
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(repo), str(fresh)], check=True)
    status = sh(fresh, "dvc", "status").stdout
    assert "modified:" not in status and "params.yaml" not in status, status
    assert "not in cache:       data/model.pt" in status


def fake_results(files_at: Path, params: dict, model: bytes, sha: str) -> None:
    """A device run's files: results.tgz with run seed0's params, model parts, summary.md."""
    run = files_at / "build" / "seed0"
    run.mkdir(parents=True)
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    with tarfile.open(files_at / "results.tgz", "w:gz") as tgz:
        tgz.add(files_at / "build", arcname=".")
    (files_at / "model.pt.part0").write_bytes(model)
    (files_at / "summary.md").write_text(f"{sha}  model.pt (seed0)\n")


def test_adopt_refuses_a_run_with_other_params(tmp_path):
    repo = copy_project(tmp_path / "repo")
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["epochs"] = 3
    params["data"]["source"] = "/tmp/cifar10.npz"  # differs, and may: the GPU machine's copy
    fake_results(tmp_path / "files", params, b"x", "0" * 64)
    proc = adopt(repo, tmp_path / "files")
    assert proc.returncode == 2
    assert "train.epochs: run 3, params.yaml 24" in proc.stderr
    assert "data.source" not in proc.stderr
    assert not (repo / "data" / "model.pt").exists()


def test_adopt_refuses_a_damaged_model_file(tmp_path):
    repo = copy_project(tmp_path / "repo")
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    files = tmp_path / "files"
    fake_results(files, params, b"part of a model", "0" * 64)
    run = files / "build" / "seed0"  # every output the run should have brought back
    kit = adopt_module()
    for stage in ("lr_find", "train", "evaluate"):
        for path in kit.declared_outputs(stage):
            dest = kit.run_file(run, path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text("{}")
    with tarfile.open(files / "results.tgz", "w:gz") as tgz:
        tgz.add(files / "build", arcname=".")
    proc = adopt(repo, files)
    assert proc.returncode == 2
    assert "a part is missing or damaged" in proc.stderr
    assert not (repo / "data" / "model.pt").exists()
    assert not (repo / "metrics" / "train.json").exists()  # nothing copied before the checks


def test_adopt_without_dvc_on_path_says_so_and_changes_nothing(tmp_path):
    repo = copy_project(tmp_path / "repo")
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    fake_results(tmp_path / "files", params, b"x", "0" * 64)
    # python by its path, as a user who has not activated .venv runs it
    proc = adopt(repo, tmp_path / "files", PATH="/usr/bin:/bin")
    assert proc.returncode == 2
    assert "dvc not found on PATH" in proc.stderr, proc.stderr
    assert not (repo / "data" / "model.pt").exists()
