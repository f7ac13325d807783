"""Following a run while it trains (resnet9/live.py): the history and DVCLive's summary after
every epoch, a resumed run's step count, DVC Studio only with a token, and, with real DVC on a
real CIFAR-10 subset, what `dvc exp show`, `dvc queue logs`, `dvc plots show / diff` and
`dvc metrics` show while a 3-epoch experiment is held after its first epoch.

The hold is the tests' own (tests/hold/sitecustomize.py, on the stage's PYTHONPATH): while the
file ``$RESNET9_LIVE_HOLD_FILE`` names exists, the train stage waits after each epoch's files
are written, so a read certainly comes before epoch 3 ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from resnet9 import live, paths
from resnet9.engine import EpochStats, FitResult
from conftest import (CKPT_DIR, TRAIN_ENV, commit_all, dvc_env, dvc_repo_for_train,
                      interrupt_after_first_checkpoint, readme_command, sh, train_history,
                      train_workdir)

SUMMARY = paths.LIVE_METRICS
HOLD_DIR = Path(__file__).parent / "hold"  # its sitecustomize.py holds a run: module docstring
STUDIO_ENV = ("DVC_STUDIO_TOKEN", "STUDIO_TOKEN", "DVC_STUDIO_REPO_URL", "STUDIO_REPO_URL",
              "DVC_STUDIO_URL", "DVC_STUDIO_OFFLINE")


def _result(epochs: int) -> FitResult:
    """A synthetic run of ``epochs`` epochs with distinct figures in every field."""
    history = [EpochStats(e, 2.0 / e, 0.1 * e, 2.5 / e, 0.09 * e, 0.01 / e, 1.5 + e)
               for e in range(1, epochs + 1)]
    return FitResult(history, [0.01] * (10 * epochs))


def _expected_summary(stats: EpochStats) -> dict:
    return {"train": {"loss": stats.train_loss, "acc": stats.train_acc},
            "test": {"loss": stats.test_loss, "acc": stats.test_acc},
            "lr": stats.lr, "seconds": stats.seconds, "step": stats.epoch}


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty working directory outside any git or DVC repo, without Studio settings."""
    for name in STUDIO_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- the logger, on synthetic results ------------------------------------------------------

def test_history_and_summary_are_complete_after_every_epoch(workdir):
    logger = live.LiveLog()
    result = _result(3)
    for epoch in range(3):
        logger(epoch, FitResult(result.history[:epoch + 1], result.lrs))
        history = pd.read_csv(paths.TRAIN_HISTORY)
        pd.testing.assert_frame_equal(history, live.history_frame(
            FitResult(result.history[:epoch + 1])), check_exact=True)
        assert json.loads(SUMMARY.read_text()) == _expected_summary(result.history[epoch])
        assert logger.step == epoch + 1
    logger.close()
    # Complete: the summary keeps the step only (the figures are in train.json, evaluate.json).
    assert json.loads(SUMMARY.read_text()) == {"step": 3}
    assert list(history.columns) == ["epoch", "train_loss", "train_acc", "test_loss",
                                     "test_acc", "lr", "seconds"]
    # One copy of the history (the CSV): no DVCLive .tsv, no dvc.yaml, no report, no temporaries.
    assert _files(workdir) == ["metrics/live/metrics.json", "plots/train_history.csv"]


def test_without_dvclive_it_says_so_and_writes_the_history_and_the_step(workdir, monkeypatch,
                                                                       capsys):
    import builtins

    real_import = builtins.__import__

    def no_dvclive(name, *args, **kwargs):  # as on a GPU machine with only PyTorch
        if name == "dvclive" or name.startswith("dvclive."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dvclive)
    logger = live.LiveLog()
    assert "dvclive is not installed" in capsys.readouterr().out
    result = _result(2)
    for epoch in range(2):
        logger(epoch, FitResult(result.history[:epoch + 1], result.lrs))
        assert json.loads(SUMMARY.read_text()) == {"step": epoch + 1}
    logger.close()
    pd.testing.assert_frame_equal(pd.read_csv(paths.TRAIN_HISTORY), live.history_frame(result))
    assert json.loads(SUMMARY.read_text()) == {"step": 2}
    assert _files(workdir) == ["metrics/live/metrics.json", "plots/train_history.csv"]


def test_a_resumed_run_continues_the_step_count_and_ends_with_the_same_files(workdir):
    straight = workdir / "straight"
    straight.mkdir()
    os.chdir(straight)
    logger = live.LiveLog()
    for epoch in range(3):
        logger(epoch, FitResult(_result(3).history[:epoch + 1]))
    last = (straight / SUMMARY).read_bytes()
    logger.close()

    resumed = workdir / "resumed"
    resumed.mkdir()
    os.chdir(resumed)
    # What DVC leaves before it reruns a stage: no outputs (it deletes them).
    logger = live.LiveLog(_result(2))
    assert logger.step == 2  # not 0: the two epochs restored from the checkpoint count
    assert json.loads(SUMMARY.read_text()) == _expected_summary(_result(2).history[-1])
    assert pd.read_csv(paths.TRAIN_HISTORY).epoch.tolist() == [1, 2]  # at once, before epoch 3
    logger(2, _result(3))
    assert logger.step == 3
    assert (resumed / SUMMARY).read_bytes() == last
    logger.close()
    for rel in (SUMMARY, paths.TRAIN_HISTORY):
        assert (resumed / rel).read_bytes() == (straight / rel).read_bytes(), rel


def test_a_run_from_scratch_drops_an_earlier_runs_summary(workdir):
    SUMMARY.parent.mkdir(parents=True)
    SUMMARY.write_text(json.dumps({"step": 7, "lr": 1.0}))
    logger = live.LiveLog()
    assert not SUMMARY.exists()  # DVCLive's clean start (resume=False)
    logger(0, _result(1))
    assert json.loads(SUMMARY.read_text())["step"] == 1


def test_a_call_for_another_epoch_than_the_results_last_is_refused(workdir):
    logger = live.LiveLog()
    with pytest.raises(ValueError, match=r"^epoch 3 is not the last of the 2 epochs in the "
                                         r"result$"):
        logger(2, _result(2))
    with pytest.raises(ValueError, match=r"^epoch 1 is not the last of the 0 epochs"):
        logger(0, FitResult())


@pytest.mark.parametrize("token", [None, "a-token"])
def test_studio_gets_each_epoch_only_with_a_token_and_the_files_do_not_change(
        workdir, monkeypatch, token):
    """DVC Studio itself cannot be reached from here (no network): the posts DVCLive would send
    are recorded instead. Without a token nothing is posted and the files are the same."""
    import dvclive.studio

    posts = []
    monkeypatch.setattr(dvclive.studio, "post_live_metrics",
                        lambda event, *a, **kw: posts.append((event, kw)) or True)
    if token:
        monkeypatch.setenv("DVC_STUDIO_TOKEN", token)
        monkeypatch.setenv("DVC_STUDIO_REPO_URL", "https://example.com/resnet9.git")
    logger = live.LiveLog()
    for epoch in range(2):
        logger(epoch, FitResult(_result(2).history[:epoch + 1]))
    logger.close()
    assert _files(workdir) == ["metrics/live/metrics.json", "plots/train_history.csv"]
    assert json.loads(SUMMARY.read_text()) == {"step": 2}
    if token is None:
        assert posts == []
        return
    # start; data after each epoch, and once more from close() (Live.end, the full summary
    # before the file is cut down to the step); done
    assert [event for event, _ in posts] == ["start", "data", "data", "data", "done"]
    assert [kw["step"] for _, kw in posts[1:4]] == [1, 2, 2]
    for step, (_, kw) in zip([1, 2, 2], posts[1:4]):
        assert kw["metrics"] == {"metrics/live/metrics.json": {
            "data": _expected_summary(_result(step).history[-1])}}
        assert kw["plots"] == {}  # the history is plots/train_history.csv, not DVCLive's


# ---- the train stage, interrupted and resumed (no DVC) ---------------------------------------

def _held(env: dict[str, str], hold: Path) -> dict[str, str]:
    """``env`` with the hold on: each epoch's end waits while the file ``hold`` exists."""
    path = os.pathsep.join(filter(None, [str(HOLD_DIR), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path, "RESNET9_LIVE_HOLD_FILE": str(hold)}


def _wait(what, proc: subprocess.Popen, seconds: float = 300):
    """Poll ``what()`` until it returns something truthy; fail if ``proc`` ends first."""
    deadline = time.monotonic() + seconds
    while True:
        found = what()
        if found:
            return found
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _summary_step(path: Path) -> int | None:
    try:
        return json.loads(path.read_text())["step"]
    except (OSError, ValueError, KeyError):  # absent, or caught mid-write
        return None


@pytest.mark.slow
def test_the_train_stage_resumes_its_step_count(tmp_path, reference):
    work = train_workdir(tmp_path, "resumed")  # 4 epochs, a checkpoint after each but the last
    interrupt_after_first_checkpoint(work, signal.SIGTERM)
    done = torch.load(next((work / CKPT_DIR).glob("*.pt")), weights_only=False)["epochs_done"]
    assert 1 <= done < 4

    hold = tmp_path / "hold"
    hold.touch()
    proc = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=work,
                            env=_held(TRAIN_ENV, hold), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # Held after the first epoch it trains: the step goes on from the checkpoint's epochs.
        _wait(lambda: _summary_step(work / SUMMARY) == done + 1, proc)
        assert proc.poll() is None
        held = train_history(work)
        pd.testing.assert_frame_equal(held, reference.iloc[:done + 1])
        summary = json.loads((work / SUMMARY).read_text())
        assert summary["test"]["acc"] == pytest.approx(held.test_acc.iloc[-1])
        assert summary["train"]["loss"] == pytest.approx(held.train_loss.iloc[-1])
    finally:
        hold.unlink()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    assert f"after epoch {done}" in out and f"epoch   {done}/4" not in out
    pd.testing.assert_frame_equal(train_history(work), reference)
    assert json.loads((work / SUMMARY).read_text()) == {"step": 4}


# ---- real DVC: what each tool shows of a running experiment ----------------------------------

LIVE_TABLE = "dvc exp show --drop '.*' --keep 'Experiment|State|step"  # the README's command


def _table_rows(table: str) -> dict[str, dict[str, str]]:
    """`dvc exp show`'s table as {experiment label: {column: cell}}."""
    lines = table.splitlines()
    at = next(i for i, line in enumerate(lines) if "Experiment" in line)
    header = lines[at].split()
    n = len(header) - 1  # cells right of the label, which may itself hold spaces
    rows = {}
    for line in lines[at + 1:]:
        cells = line.split()
        if len(cells) > n and not set(line.strip()) <= set("─"):
            rows[" ".join(cells[:-n])] = dict(zip(header[1:], cells[-n:]))
    return rows


def _running_row(repo: Path) -> dict[str, str] | None:
    """The README's live command, run as written; the running experiment's row, if any."""
    proc = sh(repo, *readme_command(LIVE_TABLE), "--no-pager", check=False, COLUMNS="200")
    if proc.returncode:
        return None
    return next((row for row in _table_rows(proc.stdout).values()
                 if row.get("State") == "Running"), None)


def _plot_epochs(plots: dict, rev: str) -> list[int]:
    """The epochs of ``rev`` in the "Loss per epoch" plot of `dvc plots show/diff --json`
    (with ``--split``, as the VS Code extension asks, the rows are an anchor's value)."""
    epochs = set()
    for part in plots["data"]["Loss per epoch"]:
        rows = part["content"]["data"]["values"]
        if isinstance(rows, str):
            rows = part["anchor_definitions"][rows]
        epochs |= {int(row["epoch"]) for row in rows if row.get("rev") == rev}
    return sorted(epochs)


def _exp_show_live(repo: Path) -> dict[str, dict]:
    """`dvc exp show --json` (what the VS Code extension reads): {experiment name: its
    revision, executor state and metrics/live/metrics.json data} for each experiment."""
    found = {}
    for commit in json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout):
        for exp in commit.get("experiments") or []:
            data = exp["revs"][0].get("data") or {}
            found[exp.get("name")] = {
                "rev": exp["revs"][0]["rev"], "state": (exp.get("executor") or {}).get("state"),
                "live": data.get("metrics", {}).get(str(SUMMARY), {}).get("data")}
    return found


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory, cifar_npz) -> Path:
    """A tiny 3-epoch project (test_resume's: 2,000 / 500 images, width 0.125) in git."""
    return dvc_repo_for_train(tmp_path_factory.mktemp("live"), "repo", cifar_npz)


def _env(hold: Path) -> dict[str, str]:
    return _held({**dvc_env(), "OMP_NUM_THREADS": "1"}, hold)


@pytest.mark.slow
def test_a_workspace_run_shows_epoch_1_before_epoch_3_ends(dvc_repo, tmp_path):
    repo = dvc_repo
    head = sh(repo, "git", "rev-parse", "HEAD").stdout
    hold = tmp_path / "hold"
    hold.touch()
    log = tmp_path / "exp_run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(["dvc", "exp", "run"], cwd=repo, env=_env(hold), stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    try:
        row = _wait(lambda: (r := _running_row(repo)) and r.get("step") == "1" and r, proc, 600)
        history = pd.read_csv(repo / paths.TRAIN_HISTORY)
        assert history.epoch.tolist() == [1] and proc.poll() is None  # epoch 3 has not ended
        assert row["step"] == "1"
        assert float(row["train.loss"]) == pytest.approx(history.train_loss[0], rel=1e-3)
        assert float(row["test.acc"]) == pytest.approx(history.test_acc[0], abs=1e-4)

        # The JSON the VS Code extension reads: the running experiment and the workspace.
        shown = _exp_show_live(repo)
        running = [v for v in shown.values() if v["state"] == "running"]
        assert len(running) == 1 and running[0]["live"]["step"] == 1
        plots = json.loads(sh(repo, "dvc", "plots", "show", "--json").stdout)
        assert _plot_epochs(plots, "workspace") == [1]
        split = json.loads(sh(repo, "dvc", "plots", "diff", "-o", str(tmp_path / "p"),
                              "--split", "--json").stdout)  # VS Code: workspace vs HEAD
        assert _plot_epochs(split, "workspace") == [1]
        metrics = json.loads(sh(repo, "dvc", "metrics", "show", "--json").stdout)
        assert metrics[""]["data"][str(SUMMARY)]["data"]["step"] == 1
    finally:
        hold.unlink()
        proc.wait(timeout=900)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "epoch   3/3" in log.read_text()
    assert json.loads((repo / SUMMARY).read_text()) == {"step": 3}
    # DVC made the one experiment; DVCLive made no experiment, commit or file of its own.
    assert sh(repo, "git", "rev-parse", "HEAD").stdout == head
    assert len(sh(repo, "dvc", "exp", "ls", "--name-only").stdout.split()) == 1
    assert not (repo / "dvclive").exists() and not (repo / paths.LIVE_DIR / "dvc.yaml").exists()
    assert sorted(p.name for p in (repo / paths.LIVE_DIR).iterdir()) == ["metrics.json"]
    assert sh(repo, "git", "diff", "--stat", "HEAD", "--", "dvc.yaml").stdout == ""


@pytest.mark.slow
def test_a_queued_run_shows_epoch_1_in_exp_show_queue_logs_and_plots_diff(dvc_repo, tmp_path):
    repo = dvc_repo
    commit_all(repo, "the workspace run")
    before = json.loads(sh(repo, "dvc", "plots", "show", "--json").stdout)
    hold = tmp_path / "hold"
    hold.touch()
    env = _env(hold)
    queued = subprocess.run(["dvc", "exp", "run", "--queue", "-S", "recipe.seed=1"], cwd=repo,
                            env=env, capture_output=True, text=True, check=True).stdout
    name = queued.split("Queued experiment '")[1].split("'")[0]
    # The worker outlives the command: its output must not hold a pipe of ours open.
    starter = subprocess.Popen(["dvc", "queue", "start", "-j", "1"], cwd=repo, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        # Until its train stage starts, a queued run shows its baseline commit's summary
        # (step 3 of the workspace run): wait for its own epoch 1.
        while not ((row := _running_row(repo)) and row.get("step") == "1"):
            assert time.monotonic() < deadline, sh(repo, "dvc", "queue", "status").stdout
            assert "Failed" not in sh(repo, "dvc", "queue", "status").stdout
            time.sleep(1)
        assert row["step"] == "1"
        shown = _exp_show_live(repo)
        assert shown[name]["state"] == "running" and shown[name]["live"]["step"] == 1

        logs = sh(repo, "dvc", "queue", "logs", name).stdout
        assert "epoch   1/3" in logs and "epoch   2/3" not in logs, logs[-2000:]

        # `dvc plots diff <name>` reads the running experiment's copy under .dvc/tmp/exps/ ...
        split = json.loads(sh(repo, "dvc", "plots", "diff", name, "-o", str(tmp_path / "p"),
                              "--split", "--json").stdout)
        assert _plot_epochs(split, name) == [1]
        stash = shown[name]["rev"]  # by its SHA: the files it was queued with
        by_sha = json.loads(sh(repo, "dvc", "plots", "diff", stash, "--json").stdout)
        assert _plot_epochs(by_sha, stash) == [1, 2, 3]
        # ... `dvc plots show` only the workspace, still the previous run's 3 epochs ...
        now = json.loads(sh(repo, "dvc", "plots", "show", "--json").stdout)
        assert _plot_epochs(now, "workspace") == _plot_epochs(before, "workspace") == [1, 2, 3]
        # ... and `dvc metrics` knows no running experiment (`dvc exp show` does).
        failed = sh(repo, "dvc", "metrics", "diff", "HEAD", name, check=False)
        assert failed.returncode != 0 and f"unknown Git revision '{name}'" in failed.stderr
    finally:
        hold.unlink()
    deadline = time.monotonic() + 900
    while "Running" in (status := sh(repo, "dvc", "queue", "status").stdout) \
            or "Queued" in status:
        assert time.monotonic() < deadline, status
        time.sleep(2)
    sh(repo, "dvc", "queue", "stop")
    starter.wait(timeout=60)
    assert "Success" in status, status + sh(repo, "dvc", "queue", "logs", name, check=False).stdout
    assert _exp_show_live(repo)[name]["live"] == {"step": 3}
