"""Shared fixtures and helpers: the repository root, the real CIFAR-10 copy in ../shared, small
data, running commands in a project copy, and the train stage on synthetic data (with the
reference run, computed once for the whole suite)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from resnet9 import paths

ROOT = Path(__file__).resolve().parents[1]
SHARED_NPZ = ROOT.parent / "shared" / "data" / "cifar10.npz"
# The PATH of a command that must need nothing from the caller's environment: the system's
# tools (git, sh) only, not the virtualenv's (dvc, python); tests pass sys.executable instead.
MINIMAL_PATH = "/usr/bin:/bin"


def subprocess_env(path: str = MINIMAL_PATH, **extra: str) -> dict[str, str]:
    """The whole environment of a project command a test starts, nothing inherited:
    ``PYTHONPATH`` the repository root (the ``resnet9`` and ``stages`` packages), ``PATH``
    ``path`` (:data:`MINIMAL_PATH` by default), then ``extra`` (e.g. ``OMP_NUM_THREADS="1"``,
    ``HOME``), all strings."""
    return {"PYTHONPATH": str(ROOT), "PATH": path, **extra}


def venv_env(**extra: str) -> dict[str, str]:
    """This process's environment with the virtualenv's ``bin`` (the directory of
    ``sys.executable``, so ``dvc`` and ``python`` are this environment's) first on ``PATH``,
    DVC's usage analytics off, then ``extra``: for commands run as a user runs them (dvc, git,
    the README's lines)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", **extra}


def _committed_params_text() -> str:
    """params.yaml as committed at HEAD. Not the workspace's file: every `dvc exp run -S` (and
    `make quick`) rewrites that one, and the tests must pass after a user's experiments too.
    Where ROOT is no git checkout (an unpacked archive), the file as it is."""
    proc = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=ROOT, capture_output=True,
                          text=True)
    return proc.stdout if proc.returncode == 0 else (ROOT / "params.yaml").read_text()


COMMITTED_PARAMS_TEXT = _committed_params_text()


def committed_params() -> dict:
    """The committed params.yaml (:func:`_committed_params_text`) as a fresh mapping."""
    return yaml.safe_load(COMMITTED_PARAMS_TEXT)


@pytest.fixture(scope="session")
def committed_params_file(tmp_path_factory) -> Path:
    """A copy of the committed params.yaml, for code that reads a file."""
    path = tmp_path_factory.mktemp("committed") / "params.yaml"
    path.write_text(COMMITTED_PARAMS_TEXT)
    return path


@pytest.fixture(scope="session")
def cifar_npz() -> Path:
    """The real CIFAR-10 (../shared/data/cifar10.npz). Skipped where absent, failed in CI."""
    if not SHARED_NPZ.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_NPZ} is missing; CI must run with ../shared beside the repo")
        pytest.skip(f"{SHARED_NPZ} is absent (real-data tests need ../shared)")
    return SHARED_NPZ


def tiny_arrays(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic CIFAR-shaped arrays: uint8 NHWC images, balanced uint8 labels 0..9."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }


def colour_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic images a tiny network learns within seconds: (n, 32, 32, 3) uint8 whose class
    (labels (n,) int64, 0..9 in turn) sets the mean colour, plus noise and a random bright square."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(30, 226, (10, 3))
    y = np.arange(n) % 10
    x = palette[y][:, None, None, :] + rng.normal(0, 25, (n, 32, 32, 3))
    for i, (r, c) in enumerate(rng.integers(0, 24, (n, 2))):
        x[i, r:r + 8, c:c + 8] += 60
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch on ``n`` intra-op threads inside the block, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """torch on one thread for the test: on a shared 2-core machine two threads that compete
    with other processes run many times slower than one."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A width-0.125 ResNet-9 trained for a few seconds on :func:`colour_arrays`, saved as the
    train stage saves it (with provenance) to a temporary ``model.pt``; its predictions vary
    across images."""
    import torch

    from resnet9 import model_file, provenance, recipe, runtime
    from resnet9.params import ModelParams

    cpu = torch.device("cpu")
    runtime.seed_everything(0)
    model_p = ModelParams(width_multiplier=0.125, logit_scale=1.0)
    net = recipe.build_model(model_p, cpu)
    x, y = colour_arrays(320)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).sub(0.47).div(0.25)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    net.train()
    with torch_threads(1):
        for _ in range(3):
            for xb, yb in zip(x.split(32), torch.from_numpy(y).split(32)):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xb), yb).backward()
                opt.step()
    path = tmp_path_factory.mktemp("model") / "model.pt"
    prov = provenance.collect(params={"model": {"width_multiplier": 0.125, "logit_scale": 1.0}},
                              dataset_sha256={"train": "synthetic"}, train_seconds=1.0,
                              device=cpu, cwd=path.parent)
    model_file.save_trained(path, net.eval(), model_p, provenance=prov)
    return path

# ---- shared by the stage, resume, live and e2e tests -------------------------------------

PROJECT = ["dvc.yaml", "params.yaml", "stages", "resnet9", ".dvc/config", ".dvc/plots",
           ".dvcignore", ".gitignore", "data/.gitkeep"]


def sh(repo: Path, *args: str, check: bool = True, **env_extra: str
       ) -> subprocess.CompletedProcess:
    env = venv_env(PYTHONHASHSEED="0", **env_extra)
    proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def readme_command(prefix: str) -> list[str]:
    """The README's command line that starts with ``prefix``, without its comment, split as a
    shell splits it: what a user copies."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith(prefix):
            return shlex.split(line, comments=True)
    raise AssertionError(f"README.md has no line starting with {prefix!r}")


def readme_line(prefix: str, doc: str = "README.md") -> str:
    """The command line of ``doc`` (README.md, or a page such as docs/team.md) that starts with
    ``prefix``, as written (for ``bash -c``)."""
    for line in (ROOT / doc).read_text().splitlines():
        if line.startswith(prefix):
            return line
    raise AssertionError(f"{doc} has no line starting with {prefix!r}")


def set_params(repo: Path, **changes: dict) -> None:
    doc = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in changes.items():
        doc[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def copy_project(repo: Path) -> Path:
    """Copy the project's pipeline files (not data, metrics or plots) into ``repo``, with the
    committed params.yaml (not the workspace's)."""
    for rel in PROJECT:
        src, dst = ROOT / rel, repo / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel == "params.yaml":
            dst.write_text(COMMITTED_PARAMS_TEXT)
        elif src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    return repo


def commit_all(repo: Path, message: str) -> None:
    """``git add -A`` and commit (nothing to commit is fine)."""
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    sh(repo, *git, "add", "-A")
    sh(repo, *git, "commit", "-qm", message, check=False)


# ---- the train stage on synthetic data ---------------------------------------------------

# RESNET9_CHECKPOINT_EVERY_S=0: a checkpoint after every epoch but the last
TRAIN_ENV = subprocess_env(OMP_NUM_THREADS="1", RESNET9_CHECKPOINT_EVERY_S="0")
CKPT_DIR = ".cache/checkpoints"


def train_workdir(tmp_path: Path, name: str, **settings) -> Path:
    work = tmp_path / name
    (work / paths.DATASET_DIR).mkdir(parents=True)
    arrays = tiny_arrays(n_train=1024, n_test=100, seed=1)
    np.savez(work / paths.ARRAYS_FILE, **arrays)
    (work / paths.META_FILE).write_text(json.dumps({"sha256": {"train": "synthetic"}}))
    doc = committed_params()
    doc["model"]["width_multiplier"] = 0.125
    settings = {"epochs": 4, "peak_epoch": 1, "batch_size": 64, "max_lr": 0.005,
                "device": "cpu", "num_workers": 0, "ema_decay": 0.0, **settings}
    for key, value in settings.items():  # each key into its section, recipe or train
        doc["recipe" if key in doc["recipe"] else "train"][key] = value
    (work / "params.yaml").write_text(yaml.safe_dump(doc))
    return work


def default_sigint() -> None:
    """For ``Popen(preexec_fn=...)``: SIGINT back to its default in the child, so that Python
    there turns Ctrl-C into KeyboardInterrupt even when the tests were started in the
    background (a shell's ``&`` ignores SIGINT, and an ignored signal stays ignored across
    exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_train(work: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=work, env=TRAIN_ENV,
                            preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def train_history(work: Path) -> pd.DataFrame:
    return pd.read_csv(work / paths.TRAIN_HISTORY).drop(columns="seconds")


def checkpoints(work: Path) -> list[Path]:
    """The finished checkpoints under ``work`` (not a ``.<name>.tmp.pt`` being written)."""
    return sorted((work / CKPT_DIR).glob("[!.]*.pt"))


def wait_for_checkpoint(work: Path, proc: subprocess.Popen) -> None:
    """Until the run's first checkpoint exists (an event, however slow the machine), or fail
    if the process ends first."""
    while not checkpoints(work):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def interrupt_after_first_checkpoint(work: Path, sig: int) -> subprocess.CompletedProcess:
    proc = start_train(work)
    wait_for_checkpoint(work, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)  # generous: the stage stops at once, see stages/runner.py
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> pd.DataFrame:
    work = train_workdir(tmp_path_factory.mktemp("ref"), "uninterrupted")
    out, err = start_train(work).communicate(timeout=600)
    assert (work / paths.MODEL_FILE).is_file(), err
    return train_history(work)


def learnable_data(work: Path) -> None:
    """Replace the noise images by ones whose colour gives the class away."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 1024), ("test", 200)):
        y = np.arange(n) % 10
        base = np.stack([(y * 25) % 256, (y * 70) % 256, (255 - y * 25) % 256], 1)
        x = base[:, None, None, :] + rng.integers(-20, 21, (n, 32, 32, 3))
        arrays[f"x_{split}"] = np.clip(x, 0, 255).astype(np.uint8)
        arrays[f"y_{split}"] = y.astype(np.uint8)
    np.savez(work / paths.ARRAYS_FILE, **arrays)


def dvc_repo_for_train(base: Path, name: str, cifar_npz: Path) -> Path:
    repo = copy_project(base / name)
    set_params(repo,
               data={"source": str(cifar_npz), "train_subset": 2000, "test_subset": 500},
               model={"width_multiplier": 0.125},
               lr_find={"num_iter": 10},
               recipe={"batch_size": 100, "device": "cpu"},
               train={"epochs": 3, "peak_epoch": 1})
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    commit_all(repo, "project")
    return repo


def dvc_env() -> dict[str, str]:
    """:func:`venv_env` for ``dvc exp run``: a checkpoint after every epoch but the last."""
    return venv_env(RESNET9_CHECKPOINT_EVERY_S="0")

# ---- the app's server, free ports (app, sshd), dvc exp show's results -------------------

@contextlib.contextmanager
def serve(command: list[str], cwd: Path, env: dict, timeout: float = 300):
    """Run the app; yield the URL of its "app: serving ... on URL" line once printed (an event,
    however slow the machine; failing after ``timeout`` s or if the app exits first). Stops it."""
    log = cwd / "app.stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err,
                                text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] + [lines.put("")],
                     daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the app did not serve within {timeout} s: {log.read_text()[-3000:]}")
            assert line, f"the app exited ({proc.wait()}): {log.read_text()[-3000:]}"
            if line.startswith("app: serving "):
                yield line.split(" on ", 1)[1].split()[0]
                return
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exp_results(shown: list) -> dict[str, tuple]:
    """``dvc exp show --json``'s experiments as ``{name: (train.max_lr, test accuracy)}``,
    None where a run has no such value."""
    found = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data") or {}
                lr = data.get("params", {}).get("params.yaml", {}).get("data", {}) \
                    .get("train", {}).get("max_lr")
                acc = data.get("metrics", {}).get("metrics/evaluate.json", {}) \
                    .get("data", {}).get("accuracy")
                found[rev.get("name") or exp.get("name")] = (lr, acc)
    return found
