"""Make one run that scripts/gpu_measure.sh brought back the committed reference (issue 20).

The GPU machine has no DVC, so its runs leave no dvc.lock. This puts the run's outputs where
dvc.yaml declares them and lets DVC record them against this commit's code and params.yaml:

    python scripts/adopt_gpu_run.py /path/to/files_at            # the run KEEP_MODEL kept (seed0)
    python scripts/adopt_gpu_run.py /path/to/files_at --run seed1 --data ~/cifar10.npz

Steps, each checked before anything in the workspace changes:
1. the model file: ``model.pt.part*`` joined, its sha256 equal to the one in ``summary.md``;
2. the run's params.yaml (in ``results.tgz``) equal to this workspace's, apart from
   ``data.source`` (the GPU machine reads a local npz);
3. ``data/cifar10`` made here by the download stage from ``--data`` when it is missing (the
   same images give the same bytes from any source, so its hash is the one the run had);
4. the outputs of lr_find, train and evaluate copied into place, then ``dvc repro
   check_params`` (every stage's first dependency), ``dvc commit`` of those stages and
   download, and ``dvc repro``, which runs only analyze and export (on this machine).

Afterwards ``dvc status`` is clean; commit dvc.lock, metrics/ and plots/ with git and
``dvc push`` the model. Exits 2 with a message naming the file or key when a check fails; an
existing ``data/model.pt`` is kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from resnet9 import dvc_cli  # noqa: E402

COMMITTED = ("download", "lr_find", "train", "evaluate")  # the stages the GPU run ran
MODEL = "data/model.pt"


class AdoptError(Exception):
    """A check failed; nothing in the workspace was changed."""


def declared_outputs(stage: str) -> list[str]:
    """The paths dvc.yaml declares as ``stage``'s outs and metrics."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    return [next(iter(entry)) if isinstance(entry, dict) else entry
            for key in ("outs", "metrics", "plots") for entry in spec.get(key, [])]


def run_file(run_dir: Path, path: str) -> Path:
    """Where gpu_measure.sh keeps an output: metrics/ as it is, plots/ flattened."""
    return run_dir / path if path.startswith("metrics/") else run_dir / Path(path).name


def join_model(files_at: Path, run: str, dest: Path) -> None:
    parts = sorted(files_at.glob("model.pt.part*"))
    if not parts:
        raise AdoptError(f"{files_at}: no model.pt.part* (was KEEP_MODEL={run} in gpu_measure.sh?)")
    summary = (files_at / "summary.md").read_text() if (files_at / "summary.md").exists() else ""
    want = next((line.split()[0] for line in summary.splitlines()
                 if line.endswith(f"model.pt ({run})")), None)
    if want is None:
        raise AdoptError(f"{files_at}/summary.md: no sha256 line for 'model.pt ({run})'; "
                         "the parts belong to another run or the summary is missing")
    digest = hashlib.sha256()
    with open(dest, "wb") as out:
        for part in parts:
            chunk = part.read_bytes()
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != want:
        raise AdoptError(f"{files_at}: the joined model.pt.part* has sha256 {digest.hexdigest()}, "
                         f"summary.md says {want}: a part is missing or damaged")


def check_params(run_dir: Path) -> None:
    ours = yaml.safe_load((ROOT / "params.yaml").read_text())
    theirs = yaml.safe_load((run_dir / "params.yaml").read_text())
    for p in (ours, theirs):
        p["data"].pop("source", None)
    keys = sorted({(s, k) for p in (ours, theirs) for s in p for k in p[s]})
    differ = [f"{s}.{k}: run {theirs.get(s, {}).get(k)!r}, params.yaml {ours.get(s, {}).get(k)!r}"
              for s, k in keys if theirs.get(s, {}).get(k) != ours.get(s, {}).get(k)]
    if differ:
        raise AdoptError(f"{run_dir.name}/params.yaml differs from params.yaml: "
                         + "; ".join(differ))


def check_model_kept(force: bool) -> None:
    if (ROOT / MODEL).exists() and not force:
        raise AdoptError(f"{MODEL} exists; it would be replaced (--force to replace it)")


def make_dataset(npz: Path, dest: Path) -> None:
    """The download stage, run in a scratch folder with ``data.source`` set to ``npz``, so that
    params.yaml here keeps its own source."""
    with tempfile.TemporaryDirectory() as scratch:
        p = yaml.safe_load((ROOT / "params.yaml").read_text())
        p["data"]["source"] = str(npz.resolve())
        (Path(scratch) / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
        env = {**os.environ,
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        subprocess.run([sys.executable, "-m", "stages.download"], cwd=scratch, env=env, check=True)
        shutil.move(Path(scratch) / "data" / "cifar10", dest)


def adopt(files_at: Path, run: str, npz: Path, force: bool) -> None:
    dvc_cli.require()  # first: the last steps need dvc, after the workspace has changed
    check_model_kept(force)
    model = ROOT / MODEL
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        try:
            with tarfile.open(files_at / "results.tgz") as tgz:
                tgz.extractall(scratch, filter="data")
        except (OSError, tarfile.TarError) as err:
            raise AdoptError(f"{files_at}/results.tgz: cannot read it ({err})") from err
        run_dir = scratch / run
        if not (run_dir / "params.yaml").exists():
            raise AdoptError(f"{files_at}/results.tgz: no run {run!r} (runs: "
                             f"{sorted(p.name for p in scratch.iterdir() if p.is_dir())})")
        check_params(run_dir)
        wanted = [p for stage in COMMITTED[1:] for p in declared_outputs(stage) if p != MODEL]
        missing = [p for p in wanted if not run_file(run_dir, p).exists()]
        if missing:
            raise AdoptError(f"{files_at}/results.tgz: run {run!r} lacks {', '.join(missing)}")
        joined = scratch / "model.pt"
        join_model(files_at, run, joined)
        dataset = ROOT / "data" / "cifar10"
        if not dataset.exists():
            if not npz.exists():
                raise AdoptError(f"--data {npz}: not a file, and data/cifar10 is missing")
            make_dataset(npz, dataset)
        for path in wanted:  # every check passed: the workspace changes from here on
            (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_file(run_dir, path), ROOT / path)
        shutil.move(joined, model)
    print(f"adopt: {run}'s outputs are in place; recording them with dvc commit")
    # the stages' common dependency first (stages/check_params.py), then theirs
    subprocess.run(["dvc", "repro", "check_params"], cwd=ROOT, check=True)
    subprocess.run(["dvc", "commit", "--force", *COMMITTED], cwd=ROOT, check=True)
    subprocess.run(["dvc", "repro"], cwd=ROOT, check=True)  # analyze and export, here
    subprocess.run(["dvc", "status"], cwd=ROOT, check=True)
    print("adopt: done. Next: git add dvc.lock metrics plots && git commit, then dvc push")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files_at", type=Path, help="the folder the device run's files came back to")
    ap.add_argument("--run", default="seed0", help="the run to adopt (gpu_measure.sh KEEP_MODEL)")
    ap.add_argument("--data", type=Path, default=None,
                    help="a local CIFAR-10 source for data/cifar10 when it is missing (default: "
                         "data.source when it is a file, else ../shared/data/cifar10.npz)")
    ap.add_argument("--force", action="store_true", help="replace an existing data/model.pt")
    args = ap.parse_args(argv)
    if args.data is None:
        source = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["source"]
        args.data = (Path(source) if Path(source).is_file()
                     else ROOT.parent / "shared" / "data" / "cifar10.npz")
    return exit_code(lambda: adopt(args.files_at, args.run, args.data, args.force))


def exit_code(adopt_call: Callable[[], None]) -> int:
    """Run ``adopt_call``: 0, or 2 with the failed check's message on stderr."""
    try:
        adopt_call()
    except (AdoptError, dvc_cli.DvcError) as err:
        print(f"adopt: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
