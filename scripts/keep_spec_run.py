"""Keep a finished scripts/spec_run.sh run in the repository, since its clone under /tmp goes with
the machine (issue 29): what scripts/spec_report.py reads, in benchmarks/results/spec_runs/.

    python scripts/keep_spec_run.py /tmp/resnet9-spec-seed2    # -> .../spec_runs/seed2-bf16/

Copies the clone's params.yaml, metrics/{lr_find,train,evaluate,export,provenance}.json and
plots/{lr_find,train_history,per_class}.csv, and its spec_run.log cut to a few kB: of each
progress bar only its first stamp and its last state are kept (a line's first stamp is what
spec_report.py times a stage by, so the stage times it reports are unchanged), and a bar whose
every redraw is a line of its own keeps its last line. The folder's name is seed<N>-<precision>,
from the run's params and provenance, unless --dest names one.

Exit 2, naming the file, if the run has not finished (its log's last line is not ``end ... rc
0``), if it lacks one of those files, or if the destination exists: nothing there is replaced.
The folder appears whole or not at all (written beside it, then renamed).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import yaml

from resnet9 import atomic_io

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import spec_report  # noqa: E402

KEPT = ["params.yaml", *(f"metrics/{name}.json" for name in
                         ("lr_find", "train", "evaluate", "export", "provenance")),
        *(f"plots/{name}.csv" for name in ("lr_find", "train_history", "per_class"))]
RUNS_DIR = ROOT / "benchmarks" / "results" / "spec_runs"
STAMP = re.compile(r"\d\d:\d\d:\d\d ")
BAR = re.compile(r"\d+%\|")  # a tqdm progress bar's state


def trim_log(log: str) -> str:
    """spec_run.log with each line of \\r-separated redraws cut to its first and last ones, and
    each run of whole lines that are bar states cut to its last line."""
    lines = []
    for line in log.split("\n"):
        parts = line.split("\r")
        while len(parts) > 1 and not parts[-1].strip():
            parts.pop()  # a redraw that cleared the bar, stamped: not its state
        lines.append(parts[0] if len(parts) == 1 else f"{parts[0]}\r{parts[-1]}")
    bar_line = [bool(STAMP.match(line) and BAR.search(line) and "\r" not in line)
                for line in lines]
    return "\n".join(line for i, line in enumerate(lines)
                     if not (bar_line[i] and i + 1 < len(lines) and bar_line[i + 1]))


def keep(clone: Path, dest: Path | None = None) -> Path:
    """Copy the finished run in ``clone`` to ``dest`` (default RUNS_DIR/seed<N>-<precision>);
    return ``dest``. Raises spec_report.ReportError as the module's docstring says."""
    log_file = clone / "spec_run.log"
    if not log_file.is_file():
        raise spec_report.ReportError(f"{log_file}: no such file (not a spec_run.sh clone)")
    log = spec_report.read_log(log_file)
    if not spec_report.finished(log):
        raise spec_report.ReportError(f"{log_file}: the run has not finished (its last line is "
                                      f"{spec_report.last_line(log)!r}, not 'end ... rc 0')")
    missing = [name for name in KEPT if not (clone / name).is_file()]
    if missing:
        raise spec_report.ReportError(f"{clone}: no {', '.join(missing)}: a finished run writes "
                                      "them")
    if dest is None:
        seed = yaml.safe_load((clone / "params.yaml").read_text())["recipe"]["seed"]
        precision = json.loads((clone / "metrics/provenance.json").read_text())["precision"]
        dest = RUNS_DIR / f"seed{seed}-{precision}"
    if dest.exists():
        raise spec_report.ReportError(f"{dest}: exists; a kept run is not replaced (remove it "
                                      "first, or give --dest)")
    with atomic_io.atomic_path(dest) as staging:
        for name in KEPT:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(clone / name, staging / name)
        with (staging / "spec_run.log").open("w", newline="") as kept:
            kept.write(trim_log(log))
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clone", type=Path, help="a finished scripts/spec_run.sh clone")
    parser.add_argument("--dest", type=Path, help=f"the folder to write (default: "
                        f"{RUNS_DIR.relative_to(ROOT)}/seed<N>-<precision>)")
    args = parser.parse_args(argv)
    try:
        dest = keep(args.clone, args.dest)
    except spec_report.ReportError as err:
        print(f"keep_spec_run: {err}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"keep_spec_run: wrote {dest} ({len(KEPT) + 1} files, {size / 1024:,.0f} kB); "
          f"list it in {RUNS_DIR.relative_to(ROOT)}/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
