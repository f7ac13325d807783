"""Does the committed reference still match the code? Which dependencies of which stage
changed since dvc.lock was written, from `dvc status --json`:

    python scripts/reference_status.py        # or: make reference-status

Per stage, one line each: the code and data files it depends on that changed, the params
sections that changed, its outputs whose bytes differ from dvc.lock's, and, apart, its outputs
that are only missing (not in this cache:
normal on a fresh clone, which has no DVC remote to pull from). Exit status 0 when no
dependency or param changed (the reference is current; missing outputs alone are fine), 1 when
one did (rerun the stages it names, or, where scripts/same_short_run.sh shows identical outputs,
record the change with `dvc commit`: docs/pipeline.md, "The committed reference"), 2 when dvc
is not on PATH or fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resnet9 import dvc_cli  # noqa: E402


def changes(status: dict) -> dict[str, dict[str, list[str]]]:
    """``dvc status --json`` -> per stage: ``deps`` (changed dependency paths, with how),
    ``params`` (changed params, ``file: key``), ``outs`` (outputs whose bytes differ from
    dvc.lock's) and ``missing`` (outputs absent, or not in the cache). A dependency that is
    another stage's missing output counts as missing, not as a change."""
    outputs = {path for entries in status.values() for e in entries if isinstance(e, dict)
               for path in (e.get("changed outs") or {})}
    found = {}
    for stage, entries in status.items():
        deps, params, outs, missing = [], [], [], []
        for entry in entries:
            if not isinstance(entry, dict):  # e.g. "always changed"
                deps.append(str(entry))
                continue
            for path, how in (entry.get("changed deps") or {}).items():
                if isinstance(how, dict):  # params.yaml: {section: modified | new | deleted}
                    params += [f"{path}: {key} ({h})" for key, h in how.items()]
                elif how == "deleted" and path in outputs:
                    missing.append(f"{path} (another stage's output)")
                else:
                    deps.append(f"{path} ({how})")
            for path, how in (entry.get("changed outs") or {}).items():
                # absent here, or present with other bytes than dvc.lock records
                (missing if how in ("not in cache", "deleted") else outs).append(f"{path} ({how})")
        found[stage] = {"deps": deps, "params": params, "outs": outs, "missing": missing}
    return found


def main() -> int:
    try:
        found = changes(json.loads(dvc_cli.run("status", "--json") or "{}"))
    except dvc_cli.DvcError as err:
        print(f"reference_status: error: {err}", file=sys.stderr)
        return 2
    stale = {s: c for s, c in found.items() if c["deps"] or c["params"] or c["outs"]}
    for stage, c in found.items():
        if c["deps"]:
            print(f"{stage}: code or data changed: {', '.join(c['deps'])}")
        if c["params"]:
            print(f"{stage}: params changed: {', '.join(c['params'])}")
        if c["outs"]:
            print(f"{stage}: outputs differ from dvc.lock: {', '.join(c['outs'])}")
        if c["missing"]:
            print(f"{stage}: outputs missing here (not in this cache): {', '.join(c['missing'])}")
    if stale:
        print(f"reference_status: dvc.lock is older than the code or params of "
              f"{len(stale)} stage(s): {', '.join(stale)}")
        return 1
    print("reference_status: dvc.lock matches the code and params; "
          + ("some outputs are not in this cache" if found else "every output is here"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
