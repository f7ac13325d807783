"""python -m resnet9.compare: many runs, one answer per recipe.

Reads ``dvc exp show --json`` (DVC stays the one record), groups the experiments by their
params with ``recipe.seed`` and ``data.source`` left out, and prints for each group (a recipe):
the number of runs, mean ± std of the test ``accuracy`` and ``tta_accuracy``, the range of the
``max_lr`` the runs trained with, and the mean's difference from the committed reference (the
metrics of the commit the experiments were run from). It names every experiment it leaves out
and why: failed, queued or running, without metrics, or evaluated on another dataset size than
the reference (``--any-data`` keeps those, without a difference). ``--md`` prints Markdown;
``--png`` draws every experiment's test accuracy and loss per epoch (``plots/train_history.csv``
as each experiment committed it) and, per group, the mean with a band of ± one std.

    python -m resnet9.compare                     # the experiments of the current commit
    python -m resnet9.compare exp-a exp-b --md    # these, as Markdown
    python -m resnet9.compare -A --png dvc_plots/compare.png

std is the sample standard deviation (n - 1), in percentage points like the means; one run
has none. Exit status: 0, also when there is nothing to compare (one line says so); 1 when
``dvc exp show`` fails or a named experiment is not found.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from resnet9 import dvc_cli, paths

# Left out of a recipe's identity: the seed (what varies within a group) and the data source
# (the same images from any source give the same dataset: stages/download.py).
NOT_RECIPE = ("recipe.seed", "data.source")
DATA_SIZE = ("data.train_subset", "data.test_subset")
METRICS = {  # column: (metrics file, key)
    "accuracy": (paths.EVALUATE_METRICS, "accuracy"),
    "tta_accuracy": (paths.EVALUATE_METRICS, "tta_accuracy"),
    "max_lr": (paths.TRAIN_METRICS, "max_lr"),
}


class CompareError(Exception):
    """``dvc exp show`` failed, or an experiment named on the command line is not there."""


@dataclass
class Run:
    """One row of ``dvc exp show``: an experiment or a baseline commit.

    ``params`` flattens params.yaml to ``section.key`` (e.g. ``recipe.seed``); ``metrics`` holds
    :data:`METRICS` as floats (accuracies as fractions in [0, 1], max_lr a learning rate);
    ``left_out`` says why it is not compared, empty if it is.
    """

    name: str
    rev: str
    baseline: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    left_out: str = ""

    @property
    def recipe(self) -> tuple:
        """The params that make the recipe: all but :data:`NOT_RECIPE`, as a sortable key."""
        return tuple(sorted((k, json.dumps(v)) for k, v in self.params.items()
                            if k not in NOT_RECIPE))


def _flatten(sections: dict) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, keys in (sections or {}).items() if isinstance(keys, dict)
            for k, v in keys.items()}


def _row(entry: dict, name: str, baseline: str) -> Run:
    """A :class:`Run` from one ``rev`` entry of ``dvc exp show --json``."""
    data = entry.get("data") or {}
    params = _flatten(((data.get("params") or {}).get("params.yaml") or {}).get("data"))
    metrics = {}
    for column, (file, key) in METRICS.items():
        value = (((data.get("metrics") or {}).get(str(file)) or {}).get("data") or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[column] = float(value)
    return Run(name=name, rev=entry.get("rev") or data.get("rev") or "", baseline=baseline,
               params=params, metrics=metrics)


def parse(shown: list[dict]) -> tuple[dict[str, Run], list[Run]]:
    """``dvc exp show --json`` -> (the baseline commits by rev, every experiment).

    An experiment is left out (:attr:`Run.left_out`) when DVC reports it failed, queued or
    running (its executor's ``state``), or when it has no ``accuracy``.
    """
    baselines, runs = {}, []
    for commit in shown:
        rev = commit.get("rev", "")
        if rev != "workspace":
            baselines[rev] = _row(commit, commit.get("name") or rev[:7], rev)
        for exp in commit.get("experiments") or []:
            for entry in exp.get("revs") or []:
                name = entry.get("name") or exp.get("name") or (entry.get("rev") or "")[:7]
                run = _row(entry, name, rev)
                # a queued run's executor says so; a workspace or finished one has none
                state = ((exp.get("executor") or {}).get("state") or "").lower()
                if entry.get("error") or state == "failed":
                    run.left_out = "failed"
                elif state in ("queued", "running"):
                    run.left_out = state
                elif "accuracy" not in run.metrics:
                    run.left_out = f"no test accuracy ({paths.EVALUATE_METRICS})"
                runs.append(run)
    return baselines, runs


def exp_show(args: Sequence[str] = (), cwd: Path | str = ".") -> list[dict]:
    """``dvc exp show --json`` with ``args`` (e.g. ``-A``, ``--rev main``), parsed.

    Raises:
        CompareError: dvc is missing or fails, or prints no JSON.
    """
    try:
        out = dvc_cli.run("exp", "show", "--json", *args, cwd=cwd)
    except dvc_cli.DvcError as err:
        raise CompareError(str(err)) from None
    try:
        return json.loads(out or "[]")
    except json.JSONDecodeError as err:
        raise CompareError(f"dvc exp show printed no JSON ({err})") from None


def select(runs: list[Run], names: Iterable[str]) -> list[Run]:
    """The runs named (all when ``names`` is empty), in the order given.

    Raises:
        CompareError: a name matches no experiment.
    """
    names = list(names)
    if not names:
        return runs
    by_name = {r.name: r for r in runs} | {r.rev: r for r in runs} | {r.rev[:7]: r for r in runs}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise CompareError(f"no experiment named {', '.join(missing)} in dvc exp show "
                           "(try -A for all commits)")
    return [by_name[n] for n in names]


def _same_data(run: Run, ref: Run) -> bool:
    """Whether ``run`` used the reference's dataset size (:data:`DATA_SIZE`)."""
    return all(run.params.get(k) == ref.params.get(k) for k in DATA_SIZE)


def check_data(runs: list[Run], baselines: dict[str, Run], any_data: bool) -> None:
    """Leave out runs evaluated on another dataset size than their reference, unless
    ``any_data``: their accuracy is on other test images."""
    for run in runs:
        ref = baselines.get(run.baseline)
        if run.left_out or ref is None or not ref.params:
            continue
        mine = [run.params.get(k) for k in DATA_SIZE]
        theirs = [ref.params.get(k) for k in DATA_SIZE]
        if not _same_data(run, ref) and not any_data:
            run.left_out = (f"other dataset size (train_subset, test_subset {mine[0]}, "
                            f"{mine[1]}; the reference {theirs[0]}, {theirs[1]}; --any-data "
                            "keeps it)")


def _label(recipe: dict[str, Any], reference: dict[str, Any]) -> str:
    """A group's name: its params that differ from the reference's, or ``the reference's``."""
    diff = [f"{k}={v}" for k, v in recipe.items()
            if k not in NOT_RECIPE and reference.get(k) != v]
    return " ".join(diff) if diff else "the reference's params"


def summarize(runs: list[Run], baselines: dict[str, Run]) -> pd.DataFrame:
    """One row per recipe of the runs not left out: ``recipe`` (what differs from the
    reference), ``runs``, ``seeds``, ``accuracy`` and ``tta_accuracy`` means and sample stds
    (percent), ``max_lr_min`` and ``max_lr_max`` (learning rates), ``vs_reference`` (mean
    accuracy minus the reference's, percentage points; NaN without a comparable reference)
    and ``experiments`` (names). Empty when nothing is left to compare."""
    kept = [r for r in runs if not r.left_out]
    groups: dict[tuple, list[Run]] = {}
    for run in kept:
        groups.setdefault((run.baseline, run.recipe), []).append(run)
    rows = []
    for (baseline, _), members in groups.items():
        members.sort(key=lambda m: m.params.get("recipe.seed") or 0)
        ref = baselines.get(baseline)
        frame = pd.DataFrame([m.metrics for m in members])
        acc = frame["accuracy"] * 100
        tta = frame.get("tta_accuracy", pd.Series(dtype=float)) * 100
        lr = frame.get("max_lr", pd.Series(dtype=float))
        ref_acc = (ref.metrics.get("accuracy")
                   if ref is not None and _same_data(members[0], ref) else None)
        rows.append({
            "recipe": _label(members[0].params, ref.params if ref else {}),
            "runs": len(members),
            "seeds": ",".join(str(m.params.get("recipe.seed")) for m in members),
            "accuracy": acc.mean(), "accuracy_std": acc.std(),
            "tta_accuracy": tta.mean(), "tta_accuracy_std": tta.std(),
            "max_lr_min": lr.min(), "max_lr_max": lr.max(),
            "vs_reference": acc.mean() - ref_acc * 100 if ref_acc is not None else float("nan"),
            "experiments": " ".join(m.name for m in members),
        })
    return pd.DataFrame(rows)


def _pm(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.2f}%" + ("" if pd.isna(std) else f" ± {std:.2f}")


def table(summary: pd.DataFrame) -> pd.DataFrame:
    """The printable table of :func:`summarize`'s frame: one string per cell."""
    return pd.DataFrame({
        "recipe": summary.recipe,
        "runs": summary.runs.astype(str),
        "seeds": summary.seeds,
        "top-1": [_pm(m, s) for m, s in zip(summary.accuracy, summary.accuracy_std)],
        "flip-TTA top-1": [_pm(m, s) for m, s in zip(summary.tta_accuracy,
                                                     summary.tta_accuracy_std)],
        "max_lr": [f"{a:.3g}" if a == b else f"{a:.3g}-{b:.3g}"
                   for a, b in zip(summary.max_lr_min, summary.max_lr_max)],
        "vs reference": ["-" if pd.isna(d) else f"{round(d, 2) + 0:+.2f} pp"  # no -0.00
                         for d in summary.vs_reference],
    })


def render(summary: pd.DataFrame, runs: list[Run], markdown: bool) -> str:
    """The report: the table (or one line when there is nothing to compare), then one line
    per experiment left out."""
    out = io.StringIO()
    if summary.empty:
        out.write("compare: no finished experiments to compare"
                  + (" (dvc exp show lists none)" if not runs else "") + "\n")
    elif markdown:
        out.write(table(summary).to_markdown(index=False) + "\n")
    else:  # every column left-aligned, as a terminal table of text reads best
        frame = table(summary)
        widths = {c: max(len(c), frame[c].str.len().max()) for c in frame}
        out.write("  ".join(c.ljust(w) for c, w in widths.items()).rstrip() + "\n")
        for row in frame.itertuples(index=False):
            out.write("  ".join(v.ljust(w) for v, w in zip(row, widths.values())).rstrip() + "\n")
    for run in runs:
        if run.left_out:
            out.write(f"{'- ' if markdown else ''}left out: {run.name}: {run.left_out}\n")
    return out.getvalue()


def history(rev: str, cwd: Path | str = ".") -> pd.DataFrame | None:
    """``plots/train_history.csv`` as the experiment commit ``rev`` holds it (the train stage
    writes it, git keeps it: ``cache: false``), or None if it has none."""
    proc = subprocess.run(["git", "show", f"{rev}:{paths.TRAIN_HISTORY.as_posix()}"], cwd=cwd,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return pd.read_csv(io.StringIO(proc.stdout))


def draw(summary: pd.DataFrame, runs: list[Run], out: Path, cwd: Path | str = ".") -> Path:
    """A PNG at ``out``: test accuracy (percent) and test loss per epoch, a thin line per
    experiment and, per group, its mean with a band of ± one sample std across its runs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from resnet9 import figures

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    by_name = {r.name: r for r in runs}
    for i, group in enumerate(summary.itertuples()):
        colour = colours[i % len(colours)]
        curves = []
        for name in group.experiments.split():
            frame = history(by_name[name].rev, cwd)
            if frame is None:
                continue
            curves.append(frame.set_index("epoch")[["test_acc", "test_loss"]])
            for ax, column, scale in ((ax_acc, "test_acc", 100), (ax_loss, "test_loss", 1)):
                ax.plot(frame.epoch, frame[column] * scale, color=colour, lw=0.8, alpha=0.45)
        if not curves:
            continue
        stacked = pd.concat(curves, axis=1, keys=range(len(curves)))
        for ax, column, scale in ((ax_acc, "test_acc", 100), (ax_loss, "test_loss", 1)):
            values = stacked.xs(column, axis=1, level=1) * scale
            mean, std = values.mean(axis=1), values.std(axis=1).fillna(0)
            ax.plot(mean.index, mean, color=colour, lw=2.2,
                    label=f"{group.recipe} (n={len(curves)})")
            ax.fill_between(mean.index, mean - std, mean + std, color=colour, alpha=0.18)
    ax_acc.set(xlabel="epoch", ylabel="test top-1 accuracy (%)",
               title="Test accuracy: each run, and per recipe mean ± 1 std")
    ax_loss.set(xlabel="epoch", ylabel="test loss (cross-entropy, mean per image)",
                title="Test loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    ax_acc.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figures.save_figure(out, fig)
    plt.close(fig)
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m resnet9.compare",
        description="Mean ± std per recipe over the experiments of `dvc exp show`.",
        epilog="Exit status: 0 (also with nothing to compare), 1 dvc failed or a named "
               "experiment is missing, 2 bad arguments.")
    p.add_argument("experiments", nargs="*",
                   help="experiment names (or revs) to include; default: every one shown")
    p.add_argument("-A", "--all-commits", action="store_true",
                   help="the experiments of every commit (dvc exp show -A)")
    p.add_argument("--rev", action="append", default=[],
                   help="the experiments of this commit (dvc exp show --rev; repeatable)")
    p.add_argument("--any-data", action="store_true",
                   help="also runs on another dataset size than the reference (no difference)")
    p.add_argument("--md", action="store_true", help="print Markdown")
    p.add_argument("--png", type=Path, default=None,
                   help="also draw the curves to this PNG (e.g. dvc_plots/compare.png)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    show_args = (["-A"] if args.all_commits else []) + [a for r in args.rev for a in ("--rev", r)]
    try:
        baselines, runs = parse(exp_show(show_args))
        runs = select(runs, args.experiments)
    except CompareError as err:
        print(f"compare: error: {err}", file=sys.stderr)
        return 1
    check_data(runs, baselines, args.any_data)
    summary = summarize(runs, baselines)
    sys.stdout.write(render(summary, runs, args.md))
    if args.png is not None and not summary.empty:
        print(f"compare: wrote {draw(summary, runs, args.png)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
