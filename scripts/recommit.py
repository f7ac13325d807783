"""`dvc commit` for a clone that lacks the reference's cached outputs: record changed code and
params in dvc.lock, keeping the lock's hashes of every dependency and output that is missing here.

Use it only where ``scripts/same_short_run.sh <before> HEAD`` showed that the change leaves every
output identical (docs/pipeline.md, "Keeping the reference current"):

    python scripts/recommit.py            # every stage
    python scripts/recommit.py lr_find    # some stages

``dvc commit`` itself needs every output in the workspace, and a fresh clone has neither the
dataset nor the model (they are cached, not in git). This is DVC's own commit
(``dvc.stage.Stage.save`` with ``allow_missing``, as ``dvc repro --allow-missing`` uses it)
without the run cache, which would hash the missing files. Exits 1 with DVC's message on error.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from dvc.exceptions import DvcException
from dvc.repo import Repo


def recommit(targets: list[str]) -> list[str]:
    """Save the deps and outs of the stages named (all when empty) into dvc.lock; a dep or out
    missing from the workspace keeps the hash the lock has. Returns the stages' names."""
    repo = Repo(".")
    done = []
    with repo.lock:
        infos = list(itertools.chain.from_iterable(
            repo.stage.collect_granular(t) for t in (targets or [None])))
        for dvcfile, group in itertools.groupby(infos, key=lambda i: i.stage.dvcfile):
            stages = [info.stage for info in group]
            for stage in stages:
                stage.save(allow_missing=True, run_cache=False)
            dvcfile.dump_stages(stages, update_pipeline=False)
            done += [s.addressing for s in stages]
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stages", nargs="*", help="stage names (default: every stage)")
    args = parser.parse_args(argv)
    try:
        done = recommit(args.stages)
    except DvcException as e:
        print(f"recommit: error: {e}", file=sys.stderr)
        return 1
    print(f"recommit: recorded {', '.join(done)} in dvc.lock; `dvc status` should now list only "
          f"what is missing from this cache (make reference-status)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
