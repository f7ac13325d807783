"""scripts/recommit.py: in a fresh clone (no cached outputs), a change to a stage's code and
params is recorded in dvc.lock while the hashes of the missing outputs stay the lock's."""

from __future__ import annotations

import sys

import yaml

from conftest import ROOT, commit_all, sh

STAGE = """stages:
  make:
    cmd: python make.py
    deps: [make.py]
    params: [section]
    outs: [out.txt]
"""
MAKE = "open('out.txt', 'w').write('made\\n')\n"


def lock_entries(repo) -> tuple[dict, dict, dict]:
    """(deps by path, params, outs by path) of stage ``make`` in ``repo``'s dvc.lock."""
    stage = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["make"]
    return ({d["path"]: d for d in stage["deps"]}, stage["params"]["params.yaml"],
            {o["path"]: o for o in stage["outs"]})


def test_code_and_params_are_recorded_and_missing_outputs_keep_their_hash(tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "dvc.yaml").write_text(STAGE)
    (origin / "make.py").write_text(MAKE)
    (origin / "params.yaml").write_text("section: {n: 1}\n")
    sh(origin, "git", "init", "-q")
    sh(origin, "dvc", "init", "-q")
    sh(origin, "dvc", "repro")
    commit_all(origin, "reference")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(origin), str(clone))
    assert not (clone / "out.txt").exists()  # cached: a fresh clone lacks it
    deps0, _, outs0 = lock_entries(clone)

    (clone / "make.py").write_text("# a comment: same output\n" + MAKE)
    (clone / "params.yaml").write_text("section: {n: 1, extra: 2}\n")
    assert "modified" in sh(clone, "dvc", "status").stdout
    assert sh(clone, "dvc", "commit", "-f", check=False).returncode != 0  # DVC's own needs out.txt

    proc = sh(clone, sys.executable, str(ROOT / "scripts/recommit.py"))
    assert "recorded make in dvc.lock" in proc.stdout
    deps, params, outs = lock_entries(clone)
    assert deps["make.py"]["md5"] != deps0["make.py"]["md5"]
    assert params == {"section": {"n": 1, "extra": 2}}
    assert outs == outs0  # out.txt's hash is still the reference's
    status = sh(clone, "dvc", "status").stdout
    assert "modified" not in status and "not in cache" in status, status


def test_an_unknown_stage_is_named_and_exits_1(tmp_path):
    (tmp_path / "dvc.yaml").write_text(STAGE)
    (tmp_path / "make.py").write_text(MAKE)
    (tmp_path / "params.yaml").write_text("section: {n: 1}\n")
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    proc = sh(tmp_path, sys.executable, str(ROOT / "scripts/recommit.py"), "nosuch", check=False)
    assert proc.returncode == 1 and "recommit: error:" in proc.stderr
    assert "nosuch" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "dvc.lock").exists()
