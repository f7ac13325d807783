"""python -m resnet9.compare (issue 31): groups by params without the seed, mean ± std per
group, what is left out and why. Unit tests on `dvc exp show --json`-shaped data (the shape
DVC 3.67 prints, executor states included), then real queued runs of a tiny recipe: the README's
seed grid, a second recipe, a failed run, and the figures checked against `dvc exp show --json`
by hand."""

from __future__ import annotations

import copy
import json
import statistics
import sys
from pathlib import Path

import pytest

from conftest import ROOT, commit_all, copy_project, readme_line, set_params, sh
from resnet9 import compare, paths

PARAMS = {"data": {"source": "x.npz", "train_subset": 1000, "test_subset": 200, "seed": 0},
          "recipe": {"seed": 0, "batch_size": 100}, "train": {"epochs": 2, "max_lr": "auto"}}


def entry(rev: str, name: str | None, accuracy: float | None, seed: int = 0, max_lr=0.002,
          **changes) -> dict:
    """One `rev` entry of dvc exp show --json: params.yaml and three metrics files."""
    params = copy.deepcopy(PARAMS)
    params["recipe"]["seed"] = seed
    for key, value in changes.items():
        section, name_ = key.split("__")
        params[section][name_] = value
    metrics = {}
    if accuracy is not None:
        metrics = {str(paths.EVALUATE_METRICS): {"data": {"accuracy": accuracy,
                                                           "tta_accuracy": accuracy + 0.01}},
                   str(paths.TRAIN_METRICS): {"data": {"max_lr": max_lr}}}
    return {"rev": rev, "name": name, "error": None, "experiments": None,
            "data": {"rev": rev, "params": {"params.yaml": {"data": params}}, "metrics": metrics}}


def experiment(name: str, state: str | None, *args, **kw) -> dict:
    executor = None if state is None else {"state": state, "name": "dvc-task"}
    return {"name": name, "executor": executor, "revs": [entry(name + "rev", name, *args, **kw)]}


def shown(*experiments: dict, reference: float = 0.5) -> list[dict]:
    return [{**entry("workspace", None, reference), "rev": "workspace"},
            {**entry("abc1234", "main", reference), "experiments": list(experiments)}]


def test_groups_by_params_without_the_seed_with_mean_and_sample_std():
    data = shown(experiment("a0", "success", 0.60, seed=0),
                 experiment("a1", "success", 0.62, seed=1),
                 experiment("a2", None, 0.64, seed=2, max_lr=0.003),  # run in the workspace
                 experiment("b0", "success", 0.70, seed=0, train__max_lr=0.01),
                 experiment("b1", "success", 0.72, seed=1, train__max_lr=0.01))
    baselines, runs = compare.parse(data)
    summary = compare.summarize(runs, baselines).set_index("recipe")
    a = summary.loc["the reference's params"]
    assert (a.runs, a.seeds, a.experiments) == (3, "0,1,2", "a0 a1 a2")
    assert a.accuracy == pytest.approx(62.0)
    assert a.accuracy_std == pytest.approx(statistics.stdev([60, 62, 64]))  # n - 1
    assert a.tta_accuracy == pytest.approx(63.0)
    assert (a.max_lr_min, a.max_lr_max) == (0.002, 0.003)
    assert a.vs_reference == pytest.approx(12.0)  # the reference: 50%
    b = summary.loc["train.max_lr=0.01"]
    assert (b.runs, b.accuracy, b.vs_reference) == (2, pytest.approx(71.0), pytest.approx(21.0))
    text = compare.render(compare.summarize(runs, baselines), runs, markdown=False)
    assert "62.00% ± 2.00" in text and "+12.00 pp" in text and "0.002-0.003" in text
    md = compare.render(compare.summarize(runs, baselines), runs, markdown=True)
    assert md.splitlines()[0].startswith("| recipe") and "| train.max_lr=0.01" in md


def test_failed_queued_running_and_unevaluated_runs_are_named_and_left_out():
    data = shown(experiment("ok", "success", 0.6),
                 experiment("boom", "failed", None),
                 experiment("later", "queued", None),
                 experiment("busy", "running", 0.3),  # a running task shows partial metrics
                 experiment("half", None, None))
    baselines, runs = compare.parse(data)
    reasons = {r.name: r.left_out for r in runs}
    assert reasons == {"ok": "", "boom": "failed", "later": "queued", "busy": "running",
                       "half": f"no test accuracy ({paths.EVALUATE_METRICS})"}
    summary = compare.summarize(runs, baselines)
    assert summary.runs.tolist() == [1]
    text = compare.render(summary, runs, markdown=False)
    for name in ("boom: failed", "later: queued", "busy: running", "half: no test accuracy"):
        assert f"left out: {name}" in text


def test_another_dataset_size_is_left_out_unless_asked():
    def runs_of():
        return compare.parse(shown(experiment("full", "success", 0.6),
                                   experiment("sub", "success", 0.7,
                                              data__train_subset=500)))
    baselines, runs = runs_of()
    compare.check_data(runs, baselines, any_data=False)
    assert runs[1].left_out.startswith("other dataset size (train_subset, test_subset 500, 200; "
                                       "the reference 1000, 200")
    baselines, runs = runs_of()
    compare.check_data(runs, baselines, any_data=True)
    summary = compare.summarize(runs, baselines).set_index("recipe")
    assert summary.loc["data.train_subset=500"].isna().vs_reference  # not comparable


def test_nothing_to_compare_is_one_line_and_a_missing_name_is_an_error():
    assert compare.render(compare.summarize([], {}), [], markdown=False) == \
        "compare: no finished experiments to compare (dvc exp show lists none)\n"
    _, runs = compare.parse(shown(experiment("a", "success", 0.5)))
    with pytest.raises(compare.CompareError, match="no experiment named nope"):
        compare.select(runs, ["nope"])
    assert [r.name for r in compare.select(runs, ["a"])] == ["a"]


# ---- real queued runs ----------------------------------------------------------------------

def by_hand(repo: Path) -> dict[tuple, list[float]]:
    """From `dvc exp show --json` by hand: test accuracies (percent) of the finished
    experiments, by (train.max_lr, seeds excluded)."""
    groups: dict = {}
    for commit in json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout):
        for exp in commit.get("experiments") or []:
            if (exp.get("executor") or {}).get("state") not in (None, "success"):
                continue
            data = exp["revs"][0]["data"]
            params = data["params"]["params.yaml"]["data"]
            acc = data["metrics"]["metrics/evaluate.json"]["data"]["accuracy"]
            groups.setdefault(params["train"]["max_lr"], []).append(acc * 100)
    return groups


@pytest.mark.slow
def test_the_readme_grid_queues_seeds_and_compare_summarizes_them(tmp_path, cifar_npz):
    repo = copy_project(tmp_path / "many")
    set_params(repo, data={"source": str(cifar_npz), "train_subset": 500, "test_subset": 200},
               model={"width_multiplier": 0.125}, lr_find={"num_iter": 5},
               recipe={"batch_size": 100, "device": "cpu"}, train={"epochs": 2, "peak_epoch": 1})
    sh(repo, "git", "init", "-q")
    commit_all(repo, "project")
    python = [sys.executable, "-m", "resnet9.compare"]
    empty = sh(repo, *python, PYTHONPATH=str(ROOT))  # no run yet: one line
    assert empty.stdout == "compare: no finished experiments to compare (dvc exp show lists none)\n"
    sh(repo, "dvc", "repro")
    commit_all(repo, "the reference run")

    sh(repo, "bash", "-c", readme_line("dvc exp run --queue -S 'recipe.seed=range(0,3)'"))
    sh(repo, "dvc", "exp", "run", "--queue", "-S", "recipe.seed=range(0,2)", "-S",
       "train.max_lr=0.003")
    sh(repo, "dvc", "exp", "run", "--queue", "-n", "broken", "-S", "analyze.gradcam_layer=nope")
    queued = sh(repo, "dvc", "queue", "status").stdout
    assert queued.count("Queued") == 6, queued  # the grid expanded into 3 runs, then 2, 1
    sh(repo, "dvc", "queue", "start", "-j", "1")
    sh(repo, "bash", "-c", "while dvc queue status | grep -q -E 'Queued|Running'; do sleep 2; "
                           "done")
    status = sh(repo, "dvc", "queue", "status").stdout
    assert status.count("Success") == 5 and status.count("Failed") == 1, status

    out = sh(repo, *python, "--png", "dvc_plots/compare.png", PYTHONPATH=str(ROOT)).stdout
    rows = {line.strip().split("  ")[0]: line for line in out.splitlines()[1:]
            if not line.startswith(("left out", "compare:"))}
    hand = by_hand(repo)
    for label, max_lr, seeds in (("the reference's params", "auto", "0,1,2"),
                                 ("train.max_lr=0.003", 0.003, "0,1")):
        accs = hand[max_lr]
        assert len(accs) == len(seeds.split(","))
        line = rows[label]
        assert f" {seeds} " in line, out
        assert f"{statistics.mean(accs):.2f}% ± {statistics.stdev(accs):.2f}" in line, out
    assert "left out: broken: failed" in out, out
    png = (repo / "dvc_plots/compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "compare: wrote dvc_plots/compare.png" in out

    md = sh(repo, *python, "--md", PYTHONPATH=str(ROOT)).stdout
    assert md.startswith("| recipe") and "- left out: broken: failed" in md
    one = sh(repo, *python, "broken", PYTHONPATH=str(ROOT)).stdout  # only the failed one
    assert one.startswith("compare: no finished experiments to compare"), one
    assert "left out: broken: failed" in one

    # dvc plots diff of the experiments: the per-run charts name each one in the legend
    names = [line.split()[1] for line in status.splitlines() if "Success" in line]
    sh(repo, "dvc", "plots", "diff", *names, "-o", "diff_page")
    html = (repo / "diff_page/index.html").read_text()
    assert "Test top-1 accuracy per epoch, per run" in html
    assert all(name in html for name in names)
