"""Make a finished scripts/spec_run.sh run the committed reference (issue 29, part 3).

The run's clone ran real `dvc repro` on the shipped params.yaml with a local data.source. This
records it here, against this checkout's code and params.yaml:

    python scripts/adopt_spec_run.py /tmp/resnet9-spec-seed0 [--force]

Checks first, and changes nothing here if one fails (exit 2, naming the file or key):
1. the run finished (its spec_run.log ends with ``rc 0``);
2. its params.yaml equals this one's apart from ``data.source``;
3. no dependency of any stage (dvc.yaml's deps, dvc.yaml itself) differs between the run's
   commit and this checkout, committed or not: a change since then needs a rerun, or
   ``scripts/same_short_run.sh`` and ``dvc commit`` (docs/pipeline.md, "Keeping the reference
   current");
4. ``data/model.pt`` here would be replaced only with ``--force``.

Then, in the clone: this params.yaml (the official URL as data.source), ``dvc repro
check_params`` and ``dvc commit download`` (the same images give the same bytes from either
source). Its cache objects, dvc.lock and every declared output come here; ``dvc status`` must
then be clean. Commit dvc.lock, metrics/ and plots/ with git; ``dvc push`` the rest.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from adopt_gpu_run import AdoptError, check_model_kept, check_params, declared_outputs, exit_code
from spec_report import finished, last_line

from resnet9 import dvc_cli  # importable: adopt_gpu_run put the repository root on sys.path

ROOT = Path(__file__).resolve().parents[1]


def stage_deps() -> list[str]:
    """dvc.yaml and every dependency of its stages that git tracks (not data or outputs)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = {dep for spec in stages.values() for dep in spec.get("deps", [])}
    tracked = subprocess.run(["git", "ls-files", "--", *sorted(deps)], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    return ["dvc.yaml", *tracked]


def check_code(clone: Path) -> str:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "diff", "--name-only", commit, "--", *stage_deps()],
                             cwd=ROOT, capture_output=True, text=True)
    if changed.returncode != 0:
        raise AdoptError(f"{clone}: its commit {commit[:7]} is not in this repository "
                         f"({changed.stderr.strip()})")
    if changed.stdout.split():
        raise AdoptError(f"stage code changed since the run's commit {commit[:7]}: "
                         f"{', '.join(changed.stdout.split())} (rerun, or same_short_run.sh "
                         "and dvc commit: docs/pipeline.md)")
    return commit[:7]


def copy_cache(clone: Path) -> int:
    """The clone's cache objects that this cache lacks; returns how many were copied."""
    src, dst = (Path(dvc_cli.run("cache", "dir", cwd=d).strip()) for d in (clone, ROOT))
    copied = 0
    for obj in (p for p in src.rglob("*") if p.is_file()):
        target = dst / obj.relative_to(src)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(obj, target)
            copied += 1
    return copied


def adopt(clone: Path, force: bool) -> None:
    dvc_cli.require()
    log = clone / "spec_run.log"
    text = log.read_text() if log.is_file() else ""
    if not finished(text):
        raise AdoptError(f"{log}: the run has not finished (last line: {last_line(text)!r})")
    check_params(clone)
    commit = check_code(clone)
    check_model_kept(force)

    shutil.copyfile(ROOT / "params.yaml", clone / "params.yaml")  # data.source: the official URL
    dvc_cli.run("repro", "check_params", cwd=clone)
    dvc_cli.run("commit", "--force", "download", cwd=clone)
    status = dvc_cli.run("status", cwd=clone)
    if "up to date" not in status:
        raise AdoptError(f"{clone}: dvc status is not clean after the commit:\n{status}")

    print(f"adopt: {copy_cache(clone)} cache objects copied from {clone}")
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for path in ["dvc.lock", *(p for stage in stages for p in declared_outputs(stage))]:
        src, dst = clone / path, ROOT / path
        if dst.is_dir():
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    print(dvc_cli.run("status", cwd=ROOT), end="")
    print(f"adopt: the run of {commit} is the reference here. Next: git add dvc.lock metrics "
          "plots && git commit, then dvc push")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clone", type=Path, help="the run's clone (scripts/spec_run.sh's SPEC_DIR)")
    ap.add_argument("--force", action="store_true", help="replace an existing data/model.pt")
    args = ap.parse_args(argv)
    return exit_code(lambda: adopt(args.clone.resolve(), args.force))


if __name__ == "__main__":
    sys.exit(main())
