"""scripts/spec_run.sh and scripts/adopt_spec_run.py (issue 29): a spec run by real dvc in its own
clone, in the background, that the same command reports on, resumes after a kill and leaves
alone once finished; then the finished run made the committed reference of the project. The
"spec" here is a tiny params.yaml (seconds of training on a real CIFAR-10 subset)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, checkpoints, commit_all, copy_project, set_params, sh

pytestmark = pytest.mark.slow

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def spec_run(repo: Path, clone: Path, npz: Path, seed: str = "0", **env: str):
    # RESNET9_CHECKPOINT_EVERY_S=0: a checkpoint after every epoch but the last
    env = {"OMP_NUM_THREADS": "1", "RESNET9_CHECKPOINT_EVERY_S": "0", **env}
    return sh(repo, "bash", "scripts/spec_run.sh", seed, check=False, SPEC_DIR=str(clone),
              SOURCE=str(npz), VENV=str(Path(sys.executable).parents[1]), **env)


def adopt(repo: Path, clone: Path, *args: str):
    return sh(repo, sys.executable, "scripts/adopt_spec_run.py", str(clone), *args, check=False)


def wait_for_checkpoint(clone: Path, timeout_s: float = 600) -> None:
    """Until the clone's run has written a checkpoint (the run is detached: no Popen to poll,
    unlike conftest.wait_for_checkpoint)."""
    deadline = time.monotonic() + timeout_s
    while not checkpoints(clone):
        assert time.monotonic() < deadline, f"no checkpoint in {clone} after {timeout_s} s"
        time.sleep(0.2)


def wait_for(log: Path, pattern: str, timeout_s: float = 600) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.open(newline="").read() if log.exists() else ""  # \r kept as written
        if re.search(pattern, text, re.MULTILINE):
            return text
        time.sleep(1)
    raise AssertionError(f"{log}: no line matching {pattern!r} after {timeout_s} s:\n{text}")


@pytest.fixture
def project(tmp_path):
    """A project whose committed params.yaml is tiny, with the official URL as data.source.
    Epochs of a few seconds each, so that the test kills the run between two of them."""
    repo = copy_project(tmp_path / "repo")
    (repo / "scripts").mkdir()
    for script in ("spec_run.sh", "spec_report.py", "adopt_spec_run.py", "adopt_gpu_run.py",
                   "keep_spec_run.py"):
        shutil.copy2(ROOT / "scripts" / script, repo / "scripts")
    set_params(repo, data={"source": URL, "train_subset": 2000, "test_subset": 200},
               model={"width_multiplier": 0.125}, lr_find={"num_iter": 5},
               recipe={"batch_size": 100, "device": "cpu"},
               train={"epochs": 4, "peak_epoch": 1})
    with open(repo / "params.yaml", "a") as params:
        params.write("# a comment the run's params.yaml keeps\n")
    sh(repo, "git", "init", "-q")
    commit_all(repo, "project")
    return repo


def test_spec_run_resumes_finishes_and_becomes_the_reference(project, tmp_path, cifar_npz):
    clone, log = tmp_path / "clone", tmp_path / "clone" / "spec_run.log"
    autogroup = Path("/proc/self/autogroup")  # absent on a kernel without autogroup scheduling
    own_autogroup = autogroup.exists() and autogroup.read_text()
    first = spec_run(project, clone, cifar_npz)
    assert first.returncode == 0, first.stderr
    assert "starting seed 0" in first.stdout and f"log: {log}" in first.stdout

    # While it runs, the same command reports and starts nothing (one dvc repro, one pid).
    again = spec_run(project, clone, cifar_npz)
    assert again.returncode == 0 and "seed 0 runs (pid" in again.stdout, again.stdout
    assert "\r" not in again.stdout  # a progress bar's line: its latest redraw only
    progress = r"^seed 0 \(.*\): unfinished, \d of 4 epochs"
    assert re.search(progress, again.stdout, re.MULTILINE), again.stdout
    # It yields the CPU: its own autogroup at nice 19 where that is allowed; the caller's as it was.
    pid = int((clone / "spec_run.pid").read_text())
    started = wait_for(log, r"^start .*autogroup nice (19|unchanged)")
    if "autogroup nice 19," in started:
        assert Path(f"/proc/{pid}/autogroup").read_text().endswith(" nice 19\n")
    assert (autogroup.exists() and autogroup.read_text()) == own_autogroup
    # Not finished: adopting it is refused, and nothing here changes.
    early = adopt(project, clone)
    assert early.returncode == 2 and "the run has not finished" in early.stderr, early.stderr

    # Killed after its first checkpoint (as a session's end kills it), resumed by the same command.
    wait_for_checkpoint(clone)
    os.killpg(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists():  # until init has reaped it
        time.sleep(0.1)
    resumed = spec_run(project, clone, cifar_npz)
    assert "resuming seed 0" in resumed.stdout, resumed.stdout
    text = wait_for(log, r"^end .* rc \d+$")
    assert re.search(r"^end .* rc 0$", text, re.MULTILINE), text
    assert "resuming from" in text and "Stage 'lr_find' didn't change, skipping" in text, text
    # Each session names the CPU, whether it runs bf16 natively (both sessions: the same CPU), and
    # the threads and cores it was given (here OMP_NUM_THREADS=1, on any core); train names them.
    assert len(re.findall(r"^start .* native bf16 (yes|no), autogroup nice .*, OMP_NUM_THREADS 1, "
                          r"cores [\d,-]+, bf16-related ", text, re.MULTILINE)) == 2, text
    assert "train: 4 epochs" in text and "on cpu, 1 thread, " in text, text
    # Every line of dvc's output carries the time it began, and so does each redraw of a progress
    # bar (after \r), which the log gets as it is drawn.
    body = [line for line in text.split("\n") if line and not line.startswith(("start ", "end "))]
    assert body and all(re.match(r"\d\d:\d\d:\d\d ", line) for line in body), body[:5]
    assert re.search(r"\r\d\d:\d\d:\d\d train epoch \d/4: ", text), text

    params_text = (clone / "params.yaml").read_text()
    params = yaml.safe_load(params_text)
    # spec_run.sh writes the real path (../shared may be a link)
    assert params["recipe"]["seed"] == 0 and params["data"]["source"] == str(cifar_npz.resolve())
    assert "# a comment the run's params.yaml keeps" in params_text
    assert "Data and pipelines are up to date" in sh(clone, "dvc", "status").stdout

    done = spec_run(project, clone, cifar_npz)
    assert "seed 0 finished" in done.stdout and log.open(newline="").read() == text

    # Its row for docs/results.md: the run's figures, and train in the two sessions it ran in.
    row = sh(project, sys.executable, "scripts/spec_report.py", str(clone)).stdout.splitlines()
    assert done.stdout.endswith("\n".join(row) + "\n"), done.stdout  # the finished run shows it
    evaluate = json.loads((clone / "metrics/evaluate.json").read_text())
    assert row[2].startswith("| 0 | ") and f"| {100 * evaluate['accuracy']:.2f}% |" in row[2]
    assert re.search(r"\| [\d,]+ s \(2 sessions\) \|", row[2]) and "lr_find" in row[0], row
    # OMP_NUM_THREADS reached the stages through setsid and dvc (docs/pipeline.md, two seeds)
    provenance = json.loads((clone / "metrics/provenance.json").read_text())
    assert provenance["torch_threads"] == 1
    assert provenance["git_dirty"] is False, provenance["git_dirty_files"]  # its logs excluded
    assert " x 1, " in row[2], row

    # The finished run becomes the project's reference: the official URL stays in params.yaml,
    # dvc status is clean, and the figures are the run's.
    adopted = adopt(project, clone)
    assert adopted.returncode == 0, adopted.stderr
    assert yaml.safe_load((project / "params.yaml").read_text())["data"]["source"] == URL
    assert "Data and pipelines are up to date" in sh(project, "dvc", "status").stdout
    for name in ("metrics/evaluate.json", "metrics/train.json"):
        assert json.loads((project / name).read_text()) == json.loads((clone / name).read_text())
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert lock["download"]["params"]["params.yaml"]["data"]["source"] == URL

    # Kept in the repository, since the clone goes with the machine: the kept folder gives the
    # same row, stage times included, as the clone.
    kept = sh(project, sys.executable, "scripts/keep_spec_run.py", str(clone)).stdout
    dest = project / "benchmarks/results/spec_runs" / f"seed0-{provenance['precision']}"
    assert f"wrote {dest} " in kept, kept
    assert len((dest / "spec_run.log").read_text()) < len(text)
    assert sh(project, sys.executable, "scripts/spec_report.py",
              str(dest)).stdout.splitlines() == row


def test_adopt_refuses_other_params_or_changed_code_and_changes_nothing(project, tmp_path):
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
    (clone / "spec_run.log").write_text("start\nend 2026-12-05T00:00:00Z rc 0\n")
    set_params(clone, recipe={"seed": 1})
    other = adopt(project, clone)
    assert other.returncode == 2 and "recipe.seed: run 1, params.yaml 0" in other.stderr

    set_params(clone, recipe={"seed": 0})
    with open(project / "resnet9" / "schedule.py", "a") as code:  # a stage's code, uncommitted
        code.write("# changed\n")
    changed = adopt(project, clone)
    assert changed.returncode == 2 and "resnet9/schedule.py" in changed.stderr, changed.stderr
    assert not (project / "metrics").exists() and not (project / "data" / "model.pt").exists()


def test_spec_run_refuses_a_bad_seed_or_key_and_starts_nothing(project, tmp_path, cifar_npz):
    bad_seed = spec_run(project, tmp_path / "a", cifar_npz, seed="one")
    assert bad_seed.returncode == 2 and "SEED must be a non-negative integer, got 'one'" \
        in bad_seed.stderr
    assert not (tmp_path / "a").exists()
    bad_key = spec_run(project, tmp_path / "b", cifar_npz, SET="train.epoch=3")
    assert bad_key.returncode != 0 and "train.epoch: no such key in params.yaml" in bad_key.stderr
    assert not (tmp_path / "b" / "spec_run.pid").exists()


@pytest.mark.parametrize("first_session", ["native bf16 {other}, bf16-related flags: x",
                                           "bf16-related flags: {other_flags}"])
def test_spec_run_refuses_to_resume_on_a_cpu_of_the_other_precision(project, tmp_path, cifar_npz,
                                                                    first_session):
    """With recipe.precision auto, a run started on a CPU with native bf16 (bf16) and resumed on
    one without (fp32), or the other way round, would mix precisions. The first session's line
    says which (a log from before the "native bf16" field: its CPU flags)."""
    from resnet9.precision import cpu_native_bf16

    here = cpu_native_bf16()
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
    params_before = (clone / "params.yaml").read_text()
    other = "no" if here else "yes"
    other_flags = "none of avx512f, avx512_bf16, amx_bf16" if here else "avx512_bf16 avx512f "
    (clone / "spec_run.log").write_text(
        "start 2026-12-05T01:00:00Z commit abc1234 cpu Some CPU x 2, "
        + first_session.format(other=other, other_flags=other_flags) + "\n")
    refused = spec_run(project, clone, cifar_npz)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert (f"started on a CPU with native bf16: {other} (so {'bf16' if other == 'yes' else 'fp32'}"
            f" under recipe.precision auto); this CPU: {'yes' if here else 'no'}") in refused.stderr
    assert not (clone / "spec_run.pid").exists()
    assert (clone / "params.yaml").read_text() == params_before
