"""End to end: real `dvc repro` in a temporary git repo on a real CIFAR-10 subset.

Small overrides (TINY below): width 0.125, 1,000 train / 500 test images, 2 epochs, batch 128, 20
LR-finder steps. Checks every declared output, what reruns and what does not, `dvc metrics diff`,
`dvc plots show`, a remote, `dvc artifacts get` of the registered model, queued experiments.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from conftest import (ROOT, commit_all, copy_project, exp_results, readme_command, readme_line,
                      set_params, sh)
from resnet9 import paths, precision

STAGES = ["download", "lr_find", "train", "evaluate", "analyze", "export"]
MODEL_NAME = "resnet9-cifar10"  # dvc.yaml artifacts

pytestmark = pytest.mark.slow  # real dvc / training subprocesses: not in `make test-fast`

# The e2e repo's size: small enough that each pipeline run takes seconds on two CPU cores.
TINY = {"train": 1000, "test": 500, "width": 0.125, "batch": 128}


def table_header(table: str) -> list[str]:
    """The column names of a table that `dvc exp show` printed."""
    return next(line for line in table.splitlines() if "Experiment" in line).split()


def ran(proc: subprocess.CompletedProcess) -> set[str]:
    return {s for s in STAGES if f"Running stage '{s}'" in proc.stdout}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, cifar_npz) -> Path:
    repo = copy_project(tmp_path_factory.mktemp("pipeline"))
    set_params(repo,
               data={"source": str(cifar_npz), "train_subset": TINY["train"],
                     "test_subset": TINY["test"]},
               model={"width_multiplier": TINY["width"]},
               lr_find={"num_iter": 20},
               recipe={"batch_size": TINY["batch"]},
               train={"epochs": 2, "peak_epoch": 1})
    sh(repo, "git", "init", "-q")
    commit_all(repo, "project")
    first = sh(repo, "dvc", "repro")
    assert ran(first) == set(STAGES), first.stdout
    return repo


def test_every_declared_output_exists_and_parses(repo):
    lr = json.loads((repo / paths.LR_FIND_METRICS).read_text())
    assert sorted(lr) == ["min_loss_lr", "rule", "steepest_lr", "suggested_max_lr"]
    assert lr["suggested_max_lr"] > 0
    assert lr["rule"] == "valley"  # the shipped default
    finder = pd.read_csv(repo / paths.LR_FIND_CSV)
    assert list(finder.columns) == ["lr", "loss", "suggested_max_lr"] and len(finder) >= 5
    assert (finder.suggested_max_lr == lr["suggested_max_lr"]).all()  # marked on the chart
    start_lr = yaml.safe_load((repo / "params.yaml").read_text())["lr_find"]["start_lr"]
    assert finder.lr.iloc[0] == pytest.approx(start_lr)  # the curve starts where params say

    history = pd.read_csv(repo / paths.TRAIN_HISTORY)
    assert list(history.columns) == ["epoch", "train_loss", "train_acc", "test_loss",
                                     "test_acc", "lr", "seconds"]
    assert history.epoch.tolist() == [1, 2]
    assert history[["train_acc", "test_acc"]].stack().between(0, 1).all()
    schedule = pd.read_csv(repo / paths.LR_SCHEDULE)
    steps_per_epoch = math.ceil(TINY["train"] / TINY["batch"])
    assert len(schedule) == 2 * steps_per_epoch and list(schedule.columns) == ["step", "lr"]
    trained = json.loads((repo / paths.TRAIN_METRICS).read_text())
    assert trained["max_lr"] == lr["suggested_max_lr"]  # max_lr: auto takes the suggestion
    assert trained["min_lr"] == pytest.approx(trained["max_lr"] / 10)
    assert trained["train_loss"] == pytest.approx(history.train_loss.iloc[-1])
    assert trained["train_acc"] == pytest.approx(history.train_acc.iloc[-1])
    assert trained["train_seconds"] == pytest.approx(history.seconds.sum())
    assert trained["images_per_s"] == pytest.approx(2 * TINY["train"] / history.seconds.sum())
    assert isinstance(trained["learned"], bool)
    phases = json.loads((repo / paths.PROVENANCE_FILE).read_text())["stage_seconds"]
    assert list(phases) == ["imports", "data", "setup", "epochs", "total"]  # until the outputs
    assert phases["epochs"] >= trained["train_seconds"] - 0.01  # the epochs, and the loop
    assert phases["total"] == pytest.approx(sum(v for k, v in phases.items() if k != "total"),
                                            abs=0.05)

    ev = json.loads((repo / paths.EVALUATE_METRICS).read_text())
    assert 0 <= ev["accuracy"] <= 1 and ev["loss"] > 0
    assert sorted(ev) == ["accuracy", "loss", "test_images", "tta_accuracy"]  # no per-class
    confusion = pd.read_csv(repo / paths.CONFUSION_CSV)
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == TINY["test"]
    assert (confusion.actual == confusion.predicted).mean() == pytest.approx(ev["accuracy"])
    per_class = pd.read_csv(repo / paths.PER_CLASS_CSV)
    assert list(per_class.columns) == ["class", "accuracy"] and len(per_class) == 10

    saved = torch.load(repo / paths.MODEL_FILE, weights_only=True)
    assert saved["model_params"] == {"width_multiplier": TINY["width"], "logit_scale": 1.0}
    assert saved["classes"][9] == "truck"
    meta = json.loads((repo / paths.META_FILE).read_text())
    assert meta["counts"] == {"train": TINY["train"], "test": TINY["test"]}
    provenance = json.loads((repo / paths.PROVENANCE_FILE).read_text())
    assert provenance == saved["provenance"]
    assert provenance["git_commit"] == sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    assert provenance["git_dirty"] is False  # only pipeline outputs changed since the commit
    assert provenance["dataset_sha256"] == meta["sha256"]
    assert provenance["params"]["train"]["epochs"] == 2 and provenance["train_seconds"] > 0
    native = precision.cpu_native_bf16()  # recipe.precision auto on this CPU
    assert provenance["precision"] == ("bf16" if native else "fp32")
    assert provenance["cpu"] == {"simd": torch.backends.cpu.get_cpu_capability(),
                                 "native_bf16": native}

    export = json.loads((repo / paths.EXPORT_METRICS).read_text())
    assert export["images"] == TINY["test"]
    for name, path in (("onnx", "data/model.onnx"), ("torchscript", "data/model.ts"),
                       ("exported_program", "data/model.pt2")):
        assert export[name]["top1_agreement"] == 1.0
        assert export[name]["file_bytes"] == (repo / path).stat().st_size
    assert export["speed"]["batch_size"] == 256

    for name in ("lr_find", "samples", "augmented", "training_curves", "lr_schedule",
                 "misclassified", "gradcam", "confusion", "per_class"):
        png = (repo / f"plots/{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
        width = int.from_bytes(png[16:20], "big")  # the IHDR chunk
        assert width <= 1400, (name, width)  # fits the results page without a cut-off column
    summary = (repo / paths.MODEL_SUMMARY).read_text()
    assert "Total params" in summary and "Total mult-adds (M):" in summary
    assert "Units." not in summary


def test_second_repro_reruns_nothing(repo):
    again = sh(repo, "dvc", "repro")
    assert ran(again) == set()
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status").stdout


def test_changing_max_lr_reruns_only_downstream_and_shows_in_metrics_diff(repo):
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    sh(repo, *git, "add", "-A")
    sh(repo, *git, "commit", "-qm", "baseline run")
    before = json.loads((repo / paths.EVALUATE_METRICS).read_text())
    before_lr = json.loads((repo / paths.LR_FIND_METRICS).read_text())["suggested_max_lr"]
    set_params(repo, train={"max_lr": 0.02})
    proc = sh(repo, "dvc", "repro")
    assert ran(proc) == {"train", "evaluate", "analyze", "export"}
    after = json.loads((repo / paths.EVALUATE_METRICS).read_text())
    diff = json.loads(sh(repo, "dvc", "metrics", "diff", "--json").stdout)
    changed = diff["metrics/evaluate.json"]
    assert changed["loss"]["old"] == pytest.approx(before["loss"])
    assert changed["loss"]["new"] == pytest.approx(after["loss"])
    assert changed["accuracy"]["old"] == pytest.approx(before["accuracy"])
    assert changed["accuracy"]["new"] == pytest.approx(after["accuracy"])
    assert after["accuracy"] != before["accuracy"]
    trained = diff["metrics/train.json"]["max_lr"]  # the LR each run trained with
    assert trained["old"] == pytest.approx(before_lr) and trained["new"] == 0.02
    params_diff = json.loads(sh(repo, "dvc", "params", "diff", "--json").stdout)
    assert params_diff["params.yaml"]["train.max_lr"] == {"old": "auto", "new": 0.02}

    # The pull request's report (scripts/pr_report.py, .github/workflows/pr-report.yml) on two
    # real commits: the baseline run, and this change committed on top of it.
    commit_all(repo, "max_lr 0.02")
    report = sh(repo, sys.executable, str(ROOT / "scripts/pr_report.py"), "--base",
                "HEAD~1").stdout
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line
            for line in report.splitlines() if line.startswith("| ")}
    old, new = f"{before['accuracy']:.6f}".rstrip("0"), f"{after['accuracy']:.6f}".rstrip("0")
    accuracy = rows[("metrics/evaluate.json", "accuracy")]
    assert old in accuracy and new in accuracy, report
    assert " 0.02 " in rows[("metrics/train.json", "max_lr")], report
    assert "| auto " in rows[("params.yaml", "train.max_lr")], report
    for figure in ("plots/training_curves.png", "plots/confusion.png", "plots/lr_find.png"):
        assert f"]({figure})" in report and (repo / figure).is_file(), report


def test_a_div_factor_change_leaves_the_lr_range_test_alone(repo):
    """min_lr = max_lr / div_factor is train's business: the range test does not rerun."""
    assert json.loads(sh(repo, "dvc", "status", "--json").stdout) == {}
    doc = yaml.safe_load((repo / "params.yaml").read_text())
    set_params(repo, train={"div_factor": 25})
    try:
        changed = json.loads(sh(repo, "dvc", "status", "--json").stdout)
        # check_params reads all of params.yaml; evaluate, analyze and export follow train's
        # outputs, and check_params's never changes
        assert set(changed) == {"check_params", "train"}, changed
    finally:
        set_params(repo, train={"div_factor": doc["train"]["div_factor"]})
    assert json.loads(sh(repo, "dvc", "status", "--json").stdout) == {}


def test_the_same_images_from_another_source_rerun_download_alone(repo, tmp_path, cifar_npz):
    """The canonical dataset does not record its source: another file with the same images
    (here the mirror rewritten with int64 labels and no compression) leaves the data/cifar10
    hash as it was, so every later stage stays cached."""
    assert json.loads(sh(repo, "dvc", "status", "--json").stdout) == {}
    dataset = (repo / paths.ARRAYS_FILE).read_bytes()
    with np.load(cifar_npz) as npz:
        np.savez(tmp_path / "same.npz", **{k: npz[k].astype(np.int64) if k.startswith("y")
                                          else npz[k] for k in npz.files})
    assert (tmp_path / "same.npz").read_bytes() != cifar_npz.read_bytes()
    doc = yaml.safe_load((repo / "params.yaml").read_text())
    set_params(repo, data={"source": str(tmp_path / "same.npz")})
    try:
        assert ran(sh(repo, "dvc", "repro")) == {"download"}
        assert (repo / paths.ARRAYS_FILE).read_bytes() == dataset
        assert json.loads(sh(repo, "dvc", "status", "--json").stdout) == {}
    finally:
        set_params(repo, data={"source": doc["data"]["source"]})
        sh(repo, "dvc", "repro")
    assert json.loads(sh(repo, "dvc", "status", "--json").stdout) == {}


def test_plots_show_writes_the_html_with_every_plot(repo):
    sh(repo, "dvc", "plots", "show", "-o", "dvc_plots")
    html = (repo / "dvc_plots/index.html").read_text()
    for title in ("Loss per epoch", "Top-1 accuracy per epoch", "LR range test",
                  "Confusion matrix (test set)", "One Cycle learning rate per step"):
        assert title in html, title
    assert '"scale": {"type": "log"}' in html  # the LR range test on a log x-axis
    assert '"field": "suggested_max_lr"' in html  # ... with the pick marked
    assert '"color": {"field": "field"' in html  # train and test in two colours
    for name in ("gradcam", "misclassified", "augmented", "lr_find", "training_curves",
                 "confusion", "per_class"):
        assert f"{name}.png" in html, name
    # .dvc/plots/page.html: without vega (offline) a note names the charts and their PNG twins
    note = html.split('<div id="offline-note">')[1].split("</div>")[0]
    for twin in ("training_curves", "lr_schedule", "lr_find", "confusion", "per_class"):
        assert f"<code>{twin}.png</code>" in note and (repo / "plots" / f"{twin}.png").is_file()
    assert 'if (typeof vegaEmbed === "undefined")' in html


def test_deleted_outputs_come_back_from_the_cache_without_retraining(repo):
    model = (repo / paths.MODEL_FILE).read_bytes()
    shutil.rmtree(repo / paths.DATASET_DIR)
    (repo / paths.MODEL_FILE).unlink()
    sh(repo, "dvc", "checkout")
    assert (repo / paths.MODEL_FILE).read_bytes() == model
    assert (repo / paths.ARRAYS_FILE).is_file()
    assert ran(sh(repo, "dvc", "repro")) == set()


def test_push_to_a_remote_and_pull_into_a_fresh_clone(repo, tmp_path):
    commit_all(repo, "run")
    sh(repo, "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    sh(repo, "dvc", "push")
    commit_all(repo, "remote")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "data/model.pt").exists()
    sh(clone, "dvc", "pull")
    assert (clone / "data/model.pt").read_bytes() == (repo / paths.MODEL_FILE).read_bytes()
    assert "Data and pipelines are up to date" in sh(clone, "dvc", "status").stdout
    assert ran(sh(clone, "dvc", "repro")) == set()


def test_the_registered_model_comes_with_dvc_artifacts_get_and_predicts(repo, tmp_path):
    if not sh(repo, "dvc", "remote", "list").stdout.strip():  # this test run alone
        sh(repo, "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    sh(repo, "dvc", "push")
    commit_all(repo, "model to register")
    # Registering a version is a GTO git tag (what DVC Studio's "Register" button creates).
    sh(repo, "git", "tag", "-a", f"{MODEL_NAME}@v0.1.0", "-m", "register the model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sh(elsewhere, "dvc", "artifacts", "get", str(repo), MODEL_NAME)
    model = elsewhere / "model.pt"
    assert model.read_bytes() == (repo / paths.MODEL_FILE).read_bytes()
    sh(elsewhere, "dvc", "artifacts", "get", str(repo), MODEL_NAME, "--rev", "v0.1.0",
       "-o", "v0.1.0.pt")
    assert (elsewhere / "v0.1.0.pt").read_bytes() == model.read_bytes()

    x = np.load(repo / paths.ARRAYS_FILE)["x_test"][:3]
    for i, image in enumerate(x):
        Image.fromarray(image).save(elsewhere / f"{i}.png")
    python = ["python", "-m", "resnet9.predict", "--model", "model.pt"]
    proc = sh(elsewhere, *python, "0.png", "1.png", "2.png", "--json", PYTHONPATH=str(ROOT))
    predicted = [p["top_k"][0]["class"] for p in json.loads(proc.stdout)["predictions"]]
    confusion = pd.read_csv(repo / paths.CONFUSION_CSV)
    assert predicted == confusion.predicted.iloc[:3].tolist()
    info = json.loads(sh(elsewhere, *python, "--info", "--json", PYTHONPATH=str(ROOT)).stdout)
    assert info["provenance"] == json.loads((repo / paths.PROVENANCE_FILE).read_text())


def wait_for_the_queue(repo: Path, timeout_s: float) -> None:
    """Until `dvc queue status` shows nothing queued or running; no task may have failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = sh(repo, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert "Failed" not in status, status + sh(repo, "dvc", "queue", "logs", "-a", check=False).stdout


def test_make_quick_runs_the_whole_pipeline_as_an_experiment(tmp_path, cifar_npz):
    """`make quick` as the README documents it, shrunk further through EXTRA (applied last) so
    that it fits CI: 1,000 training images, width 0.125, 2 epochs."""
    venv = Path(sys.prefix)
    stamp = subprocess.run(["cksum"], stdin=(ROOT / "requirements.txt").open(),
                           capture_output=True, text=True).stdout.split()[0]
    if not (venv / f".installed-{stamp}").exists():
        pytest.skip(f"{venv} was not installed by `make install` (no .installed-{stamp})")
    repo = copy_project(tmp_path / "quick")
    for rel in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy2(ROOT / rel, repo / rel)
    sh(repo, "git", "init", "-q")
    (repo / ".venv").symlink_to(venv)  # make finds its install stamp there
    (repo / ".git/info/exclude").write_text(".venv\n")  # .gitignore's .venv/ skips links
    commit_all(repo, "project")
    extra = ("-S data.train_subset=1000 -S data.test_subset=200 -S model.width_multiplier=0.125 "
             "-S lr_find.num_iter=10 -S train.epochs=2 -S train.peak_epoch=1")
    # -o: the install stamp counts as up to date, so that make never reinstalls the package
    # into the shared venv from this temporary copy (a pyproject.toml newer than the stamp would)
    proc = sh(repo, "make", "-o", f".venv/.installed-{stamp}", "quick", "SEED=2",
              f"SOURCE={cifar_npz}", f"EXTRA={extra}")
    assert ran(proc) == set(STAGES), proc.stdout
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["train"] | {"max_lr": 0.008, "epochs": 2} == params["train"]  # quick, EXTRA
    assert params["recipe"] | {"seed": 2, "batch_size": 256} == params["recipe"]
    assert params["data"]["source"] == str(cifar_npz)
    assert params["model"]["width_multiplier"] == 0.125
    history = pd.read_csv(repo / paths.TRAIN_HISTORY)
    assert history.epoch.tolist() == [1, 2]
    assert json.loads((repo / paths.TRAIN_METRICS).read_text())["max_lr"] == 0.008
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    assert any(exp.get("name") for commit in shown for exp in commit.get("experiments") or []), \
        json.dumps(shown)[:2000]  # the run is an experiment, listed by `dvc exp show`


# ---- after the tests above: these commit the workspace and leave a failed experiment ------

def _predict_one(repo: Path) -> subprocess.CompletedProcess:
    """``python -m resnet9.predict`` on a test image with the workspace's model."""
    Image.fromarray(np.load(repo / paths.ARRAYS_FILE)["x_test"][0]).save(repo / "one.png")
    return sh(repo, "python", "-m", "resnet9.predict", "one.png", "--json", PYTHONPATH=str(ROOT))


def test_a_bad_param_loses_nothing_and_the_readme_recovery_works(repo, tmp_path):
    """After an experiment, a bad value: check_params refuses it before DVC deletes any output,
    so the experiment's model still predicts; then the README's recovery lines, as typed, in
    that workspace and on a fresh clone, where the outputs are in no cache."""
    commit_all(repo, "the reference run")  # as in the project: outputs and lock committed
    good = sh(repo, "dvc", "exp", "run", "-n", "good-run", "-S", "train.max_lr=0.003")
    assert ran(good) == {"train", "evaluate", "analyze", "export"}, good.stdout
    model = (repo / paths.MODEL_FILE).read_bytes()
    outputs = {p: (repo / p).read_bytes() for p in (paths.TRAIN_METRICS, paths.LR_FIND_METRICS,
                                                    paths.EVALUATE_METRICS)}

    proc = sh(repo, "dvc", "exp", "run", "-S", "lr_find.num_iter=21", "-S", "train.epochs=abc",
              check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "check_params: error: train.epochs: 'abc' is not allowed" in out, out
    assert "Running stage 'check_params'" in out and ran(proc) == set(), out
    assert (repo / paths.MODEL_FILE).read_bytes() == model  # nothing a user had is lost
    assert {p: (repo / p).read_bytes() for p in outputs} == outputs
    assert _predict_one(repo).returncode == 0
    status = json.loads(sh(repo, "dvc", "status", "--json").stdout)
    assert set(status) == {"check_params", "lr_find", "train"}, status  # what the -S changed
    assert status["train"] == [{"changed deps": {"params.yaml": {"train": "modified"}}}], status

    # The README's recovery, line by line as typed: the committed params (the model stays),
    # then the good experiment back, then dvc checkout (a no-op here: all is in place).
    sh(repo, "bash", "-c", readme_line("git checkout params.yaml"))
    assert "epochs: abc" not in (repo / "params.yaml").read_text()
    assert (repo / paths.MODEL_FILE).read_bytes() == model
    sh(repo, "bash", "-c", readme_line("dvc exp apply <name>").replace("<name>", "good-run"))
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["max_lr"] == 0.003
    sh(repo, "bash", "-c", readme_line("dvc checkout"))
    assert (repo / paths.MODEL_FILE).read_bytes() == model
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status").stdout

    # After a stage failed mid-run, DVC had deleted its outputs: dvc checkout brings them back.
    (repo / paths.MODEL_FILE).unlink()
    sh(repo, "bash", "-c", readme_line("dvc checkout"))
    assert (repo / paths.MODEL_FILE).read_bytes() == model

    # A fresh clone: the params come back; dvc checkout names the outputs it cannot restore
    # (no cache, no remote), and the README says to rebuild them with dvc repro.
    commit_all(repo, "the good run")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    if sh(clone, "dvc", "remote", "list").stdout.strip():  # an earlier test added one
        sh(clone, "dvc", "remote", "remove", "shared")
    sh(clone, "bash", "-c", readme_line("git checkout params.yaml"))
    missing = sh(clone, "bash", "-c", readme_line("dvc checkout"), check=False)
    assert missing.returncode != 0
    assert "Checkout failed for following targets" in missing.stderr, missing.stderr
    assert "data/model.pt" in missing.stderr, missing.stderr
    assert "dvc repro" in ROOT.joinpath("README.md").read_text().split(
        "**After a failed `dvc exp run`**")[1].split("\n## ")[0]


# ---- the README's commands, as a user types them ---------------------------------------------

# Each command line of the README's ```bash blocks, matched by a regex, is either run by
# test_the_readme_commands_run (None) or skipped for the reason given. A README command with no
# entry fails test_every_readme_command_is_run_or_skipped_with_a_reason.
README_COMMANDS: list[tuple[str, str | None]] = [
    (r"make repro\b", "the full spec: hours on a CPU"),
    (r"make test\b", "the test suite itself (CI runs it)"),
    (r"make quick\b", "test_make_quick_runs_the_whole_pipeline_as_an_experiment runs it"),
    (r"dvc exp run -S data\.source=", "the full spec: hours on a CPU"),
    (r"make demo\b", "serves until stopped: tests/test_app_browser.py runs the app in Chromium"),
    (r"make space\b", "tests/test_app.py assembles the Space and starts it in a fresh venv"),
    (r"source \.venv/bin/activate", None),
    (r"\.venv/bin/dvc ", None),
    (r"dvc (repro|metrics diff|params diff|plots show)\b(?!.*<)", None),
    (r"dvc exp run -S (train|recipe)\.", None),
    (r"dvc exp show\b", None),
    (r"for lr in ", None),
    (r"dvc queue (start|logs)\b", None),
    (r"git checkout params\.yaml", None),
    (r"dvc exp apply <name>$", "test_a_bad_param_loses_nothing_and_the_readme_recovery_works"),
    (r"dvc checkout$", None),
    (r"python -m resnet9\.predict ", None),
    (r"dvc exp run --queue -S 'recipe\.seed=range", "tests/test_compare.py runs the grid"),
    (r"python -m resnet9\.compare", "tests/test_compare.py runs it on real queued runs"),
    (r"dvc plots diff ", "tests/test_compare.py runs dvc plots diff of its experiments"),
]


def readme_commands() -> list[str]:
    """Every command line of the README's ```bash blocks, in order, without its comment."""
    commands, in_bash = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_bash = line.strip() == "```bash"
            continue
        command = " ".join(shlex.split(line, comments=True)) if in_bash else ""
        if command:
            commands.append(line.split(" #")[0].strip() if "#" in line else line.strip())
    return commands


def readme_entry(command: str) -> tuple[str, str | None]:
    matches = [(pattern, how) for pattern, how in README_COMMANDS if re.match(pattern, command)]
    assert len(matches) == 1, f"README command {command!r} matches {len(matches)} entries"
    return matches[0]


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    commands = readme_commands()
    assert len(commands) >= 20 and "dvc repro" in commands
    for command in commands:
        readme_entry(command)


def test_the_readme_commands_run(repo):
    """The README's runnable commands, in its order, in the e2e repo (tiny settings: width
    0.125, 1,000 images), through bash as a user types them. Placeholders get real values:
    ``<name>`` a queued experiment's name; ``photos/*.jpg`` of the predict examples are CIFAR-10
    test images saved as files, the other images are the shipped app/examples/."""
    commit_all(repo, "before the README's commands")
    (repo / ".venv").symlink_to(Path(sys.prefix))
    shutil.copytree(ROOT / "app/examples", repo / "app/examples")  # shipped, as in a clone
    x = np.load(repo / paths.ARRAYS_FILE)["x_test"][:2]
    (repo / "photos").mkdir()
    for name, image in zip(["photos/a.jpg", "photos/b.jpg"], x):  # the user's own photos
        Image.fromarray(image).save(repo / name)
    ran_commands = []
    for command in readme_commands():
        if readme_entry(command)[1] is not None:
            continue
        if "<name>" in command:
            status = sh(repo, "dvc", "queue", "status").stdout.splitlines()
            done = [line.split()[1] for line in status if "Success" in line]
            command = command.replace("<name>", done[-1])
        proc = sh(repo, "bash", "-c", command, check=False, PYTHONPATH=str(ROOT))
        assert proc.returncode == 0, (f"README command failed ({proc.returncode}): {command}\n"
                                      f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        ran_commands.append(command)
        if command.startswith("dvc queue start"):
            wait_for_the_queue(repo, timeout_s=900)
            queued_runs_kept_their_checkpoints_in_the_workspace_and_show_their_metrics(repo)
    assert len(ran_commands) >= 15, ran_commands


def queued_runs_kept_their_checkpoints_in_the_workspace_and_show_their_metrics(repo: Path):
    """A queued run executes in a copy under .dvc/tmp/exps/, yet keeps its checkpoint in the
    workspace's .cache/checkpoints/ ($DVC_ROOT), where the same command queued again finds it;
    and both of the README's queued runs are in `dvc exp show` with their accuracy."""
    status = sh(repo, "dvc", "queue", "status").stdout.splitlines()
    names = [line.split()[1] for line in status if "Success" in line]
    assert len(names) >= 2, status
    for name in names:
        log = sh(repo, "dvc", "queue", "logs", name).stdout
        assert f"train: no checkpoint {repo}/.cache/checkpoints/" in log, log[-3000:]
    rows = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    found = exp_results(rows)  # name: (max_lr, accuracy)
    assert {0.002, 0.01} <= {lr for lr, acc in found.values() if acc is not None}, \
        json.dumps(rows)[:3000]


def test_exp_show_fits_120_columns_and_the_readme_narrowing_command_narrows(repo):
    """After the README's experiments: another seed, and two queued values of train.max_lr."""
    changed = sh(repo, "dvc", "exp", "show", "--only-changed", "--no-pager", COLUMNS="120").stdout
    assert max(map(len, changed.splitlines())) <= 120, changed
    # after the experiment's name, date and (queued runs) state and executor, the test
    # accuracy first; what does not fit (here max_lr and the params) folds into "…" at the
    # right edge, which is what the README's narrowing command is for
    header = table_header(changed)
    data_columns = [c for c in header if c not in ("Experiment", "Created", "State", "Executor")]
    assert data_columns[:3] == ["accuracy", "loss", "tta_accuracy"], changed
    assert "per_class" not in changed

    narrow = sh(repo, *readme_command("dvc exp show --drop"), "--no-pager", COLUMNS="120").stdout
    assert table_header(narrow) == ["Experiment", "accuracy", "tta_accuracy", "max_lr",
                                    "train.max_lr"], narrow
    assert "…" not in narrow and max(map(len, narrow.splitlines())) <= 120, narrow
