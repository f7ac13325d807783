"""The dvc command line, called from our tools the way a user types it, with one error type.

compare.py, scripts/pr_report.py, scripts/reference_status.py and the adopt scripts all call
``dvc``; a missing dvc (no .venv on PATH) or a failing command reaches their users as one line,
never as a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

MISSING = ("dvc not found on PATH: activate .venv "
           "(source .venv/bin/activate; `make install` makes it)")


class DvcError(RuntimeError):
    """dvc is not on PATH, or a dvc command exited non-zero."""


def require() -> None:
    """Check that ``dvc`` is on PATH before a tool changes files that a later dvc call completes.

    Raises:
        DvcError: no ``dvc`` on PATH.
    """
    if shutil.which("dvc") is None:
        raise DvcError(MISSING)


def run(*args: str, cwd: Path | str = ".") -> str:
    """The stdout of ``dvc <args>`` run in ``cwd``.

    Raises:
        DvcError: dvc is not on PATH, or exits non-zero; the message names the command, the exit
            status, ``cwd`` (unless ``.``) and dvc's ``ERROR`` lines (else its last stderr line).
    """
    try:
        proc = subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise DvcError(MISSING) from None
    if proc.returncode != 0:
        where = "" if str(cwd) == "." else f" in {cwd}"
        raise DvcError(f"dvc {' '.join(args)} failed (exit {proc.returncode}){where}: "
                       f"{reason(proc.stderr)}")
    return proc.stdout


def reason(stderr: str) -> str:
    """dvc's ``ERROR:`` lines from ``stderr``, else its last non-empty line (dvc ends some errors
    with a support link, so the last line alone can say nothing)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return " / ".join(errors) if errors else (lines[-1] if lines else "no message")
