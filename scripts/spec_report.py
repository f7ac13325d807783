"""The figures of scripts/spec_run.sh runs (issue 29, part 2), as rows for docs/results.md.

    python scripts/spec_report.py /tmp/resnet9-spec-seed0 /tmp/resnet9-spec-seed1 ...
    python scripts/spec_report.py . /tmp/resnet9-spec-seed1    # with the committed reference
    python scripts/spec_report.py --epochs . /tmp/resnet9-spec-seed1   # the per-epoch table

One Markdown row per finished run: its seed, commit, CPU and precision, the max_lr its LR range
test picked, test top-1 and flip-TTA top-1 (evaluate), and each stage's time, then the mean ±
std (sample std, n - 1, in percentage points) of both accuracies over the finished runs. An
unfinished run gets a line saying how far its training is and counts in no mean. ``--epochs``
prints instead each epoch's test top-1 (EMA weights) and seconds, one column pair per run, from
each run's plots/train_history.csv.

A run is a spec_run.sh clone, or a checkout whose metrics/ and plots/ are one finished run's
outputs with no spec_run.log beside them: the committed reference, once
scripts/adopt_spec_run.py made a spec run of it, whose clone may be gone (a new machine keeps no
/tmp). Such a run's params are those its provenance recorded, and its stage times, which only
the clone's log held, are not in its row.

A stage's time is read from the run's spec_run.log, whose lines carry the UTC time at which each
was written (so a stage's time is from its "Running stage" line to the next stage's, or to the
run's end). A stage that a session's end cut short and the next session resumed counts the time
up to its last line before the cut, in each session: the epoch that was lost mid-way is not in
it. The number of sessions a stage spanned is given where it is more than one.

Exit 2, naming the folder and the file or key, if a folder is neither a clone nor a finished
run's checkout, if a clone has finished but lacks metrics that a finished run writes, or if the
runs' params differ other than in recipe.seed and data.source: their mean would mix recipes.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import re
import statistics
import sys
from pathlib import Path

import yaml

STAMPED = re.compile(r"(\d\d):(\d\d):(\d\d) (.*)", re.DOTALL)
STAGE = re.compile(r"Running stage '([^']+)':")
VARYING = {("recipe", "seed"), ("data", "source")}  # what may differ between the runs of one recipe


class ReportError(Exception):
    """A clone that is not a spec run, or runs that do not share one recipe."""


def read_log(path: Path) -> str:
    """A spec_run.log's text with its \r kept: read as text, Python would turn each \r into a
    line break, and each redraw of a progress bar would count as a line begun (stage_times)."""
    with path.open(newline="", errors="replace") as log:
        return log.read()


def line_time(line: str) -> dt.datetime:
    """The UTC time of a ``start <ISO time> ...`` or ``end <ISO time> rc N`` line."""
    return dt.datetime.fromisoformat(line.split()[1])


def last_line(log: str) -> str:
    """A spec_run.log's last line: ``end <ISO time> rc 0`` once the run has finished."""
    return log.rstrip("\n").rsplit("\n", 1)[-1]


def finished(log: str) -> bool:
    """Whether the run of this spec_run.log has finished: its last line is ``end ... rc 0``
    (``scripts/spec_run.sh`` starts nothing after that)."""
    return re.fullmatch(r"end \S+ rc 0", last_line(log)) is not None


def stage_times(log: str) -> dict[str, tuple[float, int]]:
    """Each stage's seconds and the number of sessions it ran in, from a spec_run.log.

    The log holds ``start <ISO time> ...`` when a session starts the run, ``HH:MM:SS <line>``
    for each line dvc printed and ``end <ISO time> rc N`` when the run ends. A line's first stamp
    is the time it began (a progress bar's redraws, after ``\\r``, carry their own; in a log
    written before 2026-12-05, the time the line was complete). A stage runs from its
    ``Running stage 'name':`` line to the next one, to ``end``, or, when the session's end
    killed it, to the last line it began: the epoch cut short mid-way is not counted, since
    train's progress bar begins a new line after each epoch's summary.

    Raises:
        ReportError: a stamped line before any ``start`` line.
    """
    times: dict[str, list[float]] = {}
    now = open_at = None  # datetimes: the last stamp, and the start of the stage that runs
    stage = None

    def close(at: dt.datetime) -> None:
        nonlocal stage
        if stage is not None:
            times.setdefault(stage, []).append((at - open_at).total_seconds())
        stage = None

    for line in log.split("\n"):
        if line.startswith("start "):
            close(now)
            now = line_time(line)
        elif line.startswith("end "):
            close(line_time(line))
        elif match := STAMPED.fullmatch(line):
            if now is None:
                raise ReportError(f"a line stamped {line[:8]} before any 'start' line")
            h, m, s = (int(g) for g in match.groups()[:3])
            stamp = now.replace(hour=h, minute=m, second=s)
            now = stamp if stamp >= now else stamp + dt.timedelta(days=1)  # past midnight
            if name := STAGE.search(match[4]):
                close(now)
                stage, open_at = name[1], now
    return {name: (sum(spans), len(spans)) for name, spans in times.items()}


def read_json(clone: Path, name: str) -> dict:
    try:
        return json.loads((clone / name).read_text())
    except (OSError, ValueError) as err:
        raise ReportError(f"{clone / name}: {err}") from None


def read_history(path: Path) -> list[dict]:
    """A train_history.csv's epochs: ``test_acc`` (a fraction) and ``seconds`` (wall time)."""
    try:
        return [{"test_acc": float(row["test_acc"]), "seconds": float(row["seconds"])}
                for row in csv.DictReader(path.open())]
    except (OSError, KeyError, ValueError) as err:
        raise ReportError(f"{path}: {err!r}") from None


def read_outputs(folder: Path, provenance: dict) -> dict:
    """A finished run's figures from its metrics/ and plots/ (see the module's docstring);
    ``provenance`` is its metrics/provenance.json, read by the caller."""
    evaluate = read_json(folder, "metrics/evaluate.json")
    cpu = provenance.get("cpu") or {}
    return {"finished": True, "commit": provenance["git_commit"][:7],
            "machine": f"{provenance['device_name']} x {provenance['torch_threads']}, "
                       f"{cpu.get('simd', '?')}, {provenance['precision']}",
            "max_lr": read_json(folder, "metrics/lr_find.json")["suggested_max_lr"],
            "top1": 100 * evaluate["accuracy"], "tta": 100 * evaluate["tta_accuracy"],
            "history": read_history(folder / "plots" / "train_history.csv")}


def read_run(clone: Path) -> dict:
    """One spec run's figures (see the module's docstring), from a clone or from a checkout of
    the committed reference. For a run under way or stopped, ``finished`` is False and it has
    only its epochs so far (``history``) and the last one's test top-1 (``top1``, %)."""
    log_path = clone / "spec_run.log"
    if not log_path.is_file():
        if not (clone / "metrics" / "provenance.json").is_file():
            raise ReportError(f"{log_path}: no such file, nor metrics/provenance.json (neither a "
                              "scripts/spec_run.sh clone nor a finished run's checkout)")
        provenance = read_json(clone, "metrics/provenance.json")
        if not (params := provenance.get("params")):
            raise ReportError(f"{clone / 'metrics/provenance.json'}: no params recorded")
        return {**read_outputs(clone, provenance), "clone": clone, "params": params,
                "seed": params["recipe"]["seed"], "stages": {}}
    log = read_log(log_path)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    run = {"clone": clone, "params": params, "seed": params["recipe"]["seed"]}
    if not finished(log):
        # The clone's train_history.csv is the committed reference's until this run's train
        # stage writes its own: it counts only if written since the run's first start.
        history = clone / "plots" / "train_history.csv"
        first = re.search(r"^start .*", log, re.MULTILINE)
        ours = first and history.exists() and (
            history.stat().st_mtime > line_time(first[0]).timestamp())
        rows = read_history(history) if ours else []
        return {**run, "finished": False, "history": rows,
                "top1": 100 * rows[-1]["test_acc"] if rows else None}
    return {**run, **read_outputs(clone, read_json(clone, "metrics/provenance.json")),
            "stages": stage_times(log)}


def check_one_recipe(runs: list[dict]) -> None:
    """Raises ReportError naming the first key whose value differs between two runs, other
    than recipe.seed and data.source."""
    first = runs[0]
    for run in runs[1:]:
        for section in dict.fromkeys([*first["params"], *run["params"]]):
            ours, theirs = first["params"].get(section, {}), run["params"].get(section, {})
            for key in dict.fromkeys([*ours, *theirs]):  # a key only one run has counts too
                value, other = ours.get(key), theirs.get(key)
                if (section, key) not in VARYING and other != value:
                    raise ReportError(f"{section}.{key}: {value!r} in {first['clone']}, "
                                      f"{other!r} in {run['clone']}: not one recipe")


def seconds(value: float, sessions: int) -> str:
    return f"{value:,.0f} s" + (f" ({sessions} sessions)" if sessions > 1 else "")


def mean_std(values: list[float]) -> str:
    """``93.50% ± 0.71`` (sample std, percentage points); the mean alone for one value."""
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}%{spread}"


def report(runs: list[dict]) -> str:
    """The Markdown table of the finished runs, the mean ± std line, then one line per
    unfinished run."""
    done = [run for run in runs if run["finished"]]
    lines = []
    if done:
        stages = list(dict.fromkeys(name for run in done for name in run["stages"]))
        columns = ["seed", "commit", "CPU, threads, kernels, precision", "max_lr", "test top-1",
                   "flip-TTA top-1", *stages]
        lines += ["| " + " | ".join(columns) + " |", "| --- " * len(columns) + "|"]
        for run in done:
            cells = [str(run["seed"]), run["commit"], run["machine"], f"{run['max_lr']:.3e}",
                     f"{run['top1']:.2f}%", f"{run['tta']:.2f}%"]
            cells += [seconds(*run["stages"][name]) if name in run["stages"]
                      else "skipped" if run["stages"] else "not recorded" for name in stages]
            lines.append("| " + " | ".join(cells) + " |")
        seeds = ", ".join(str(run["seed"]) for run in done)
        lines += ["", f"{len(done)} run(s), seeds {seeds}: test top-1 "
                      f"{mean_std([run['top1'] for run in done])}, flip-TTA top-1 "
                      f"{mean_std([run['tta'] for run in done])}"]
    for run in runs:
        if not run["finished"]:
            lines.append(progress(run))
    return "\n".join(lines)


def progress(run: dict) -> str:
    """How far an unfinished run's train stage is: epochs done, the last one's test top-1 and
    seconds, and the training time left at the median epoch's seconds (robust to epochs that
    shared the CPU with other work)."""
    epoch_seconds = [row["seconds"] for row in run["history"]]
    done, total = len(epoch_seconds), run["params"]["train"]["epochs"]
    line = f"seed {run['seed']} ({run['clone']}): unfinished, {done} of {total} epochs"
    if not done:
        return line
    median = statistics.median(epoch_seconds)
    return (f"{line}, the last at test top-1 {run['top1']:.2f}% in "
            f"{epoch_seconds[-1]:,.0f} s; about {(total - done) * median / 3600:.1f} h of "
            f"training to go at the median epoch ({median:,.0f} s)")


def epoch_table(runs: list[dict]) -> str:
    """Each epoch's test top-1 (EMA weights, %) and seconds, a column pair per run, as a
    Markdown table with a row for every epoch any run has finished (blank where one has not)."""
    header = "| epoch |" + "".join(f" seed {run['seed']}: test top-1 | seconds |" for run in runs)
    lines = [header, "| --- " * (1 + 2 * len(runs)) + "|"]
    for epoch in range(max(len(run["history"]) for run in runs)):
        cells = [str(epoch + 1)]
        for run in runs:
            row = run["history"][epoch] if epoch < len(run["history"]) else None
            cells += ([f"{100 * row['test_acc']:.2f}%", f"{row['seconds']:,.0f}"] if row
                      else ["", ""])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clones", nargs="+", type=Path,
                        help="scripts/spec_run.sh clones, or a checkout of the committed reference")
    parser.add_argument("--epochs", action="store_true",
                        help="print each epoch's test top-1 and seconds per run instead")
    args = parser.parse_args(argv)
    try:
        runs = [read_run(clone) for clone in args.clones]
        check_one_recipe(runs)
    except ReportError as err:
        print(f"spec_report: {err}", file=sys.stderr)
        return 2
    print(epoch_table(runs) if args.epochs else report(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
