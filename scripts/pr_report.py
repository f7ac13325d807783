"""The Markdown of a pull request's report: what the workspace's run changed against a base.

.github/workflows/pr-report.yml runs a small experiment on every pull request, then this
script, and posts its output with CML (`cml comment create --publish report.md`, which uploads
the local images the Markdown links to):

    python scripts/pr_report.py --base origin/main > report.md

The report holds `dvc metrics diff <base> --md` (every metric of evaluate, train and lr_find, old
and new), `dvc params diff <base> --md` (the params that differ) and the run's figures as image
links relative to the repository root (plots/*.png, where the analyze stage writes them). Exit
status 1, with one line on stderr, when dvc is missing or a dvc command fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from resnet9 import dvc_cli  # noqa: E402
from resnet9.paths import (EVALUATE_METRICS, FIGURES, LR_FIND_METRICS,  # noqa: E402
                           LR_FIND_PNG, TRAIN_METRICS)

# The metrics files of the report: accuracy, how training went, the LR pick (not export's
# speeds, which vary with the machine).
REPORTED = (EVALUATE_METRICS, TRAIN_METRICS, LR_FIND_METRICS)
# The figures a reviewer looks at first, in this order, with their captions.
SHOWN = {FIGURES["training_curves"]: "Loss and top-1 accuracy per epoch",
         FIGURES["confusion"]: "Confusion matrix (test set)",
         LR_FIND_PNG: "LR range test"}


def report(base: str, cwd: Path | str = ".") -> str:
    """The Markdown report of the workspace in ``cwd`` against revision ``base``.

    Raises:
        DvcError: dvc is missing or a dvc command fails.
    """
    cwd = Path(cwd)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd,
                            capture_output=True, text=True).stdout.strip() or "?"
    metrics = dvc_cli.run("metrics", "diff", base, "--all", "--md", "--precision", "6",
                          "--targets", *(str(p) for p in REPORTED), cwd=cwd).strip()
    params = dvc_cli.run("params", "diff", base, "--md", cwd=cwd).strip()
    parts = [f"## ResNet-9: this change ({commit}) against `{base}`", "",
             "### Metrics (`dvc metrics diff`)", "", metrics or "No metrics found.", "",
             "### Params (`dvc params diff`)", "", params or "No params changed.", ""]
    shown = [(caption, path) for path, caption in SHOWN.items() if (cwd / path).is_file()]
    if shown:
        parts += ["### Figures", ""]
        parts += [f"![{caption}]({path.as_posix()})" for caption, path in shown]
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default="main", help="the revision to compare with (default main)")
    args = p.parse_args(argv)
    try:
        sys.stdout.write(report(args.base))
    except dvc_cli.DvcError as err:
        print(f"pr_report: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
