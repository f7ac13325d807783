"""resnet9/dvc_cli.py: a missing dvc and a failing dvc command each become one DvcError whose
message says what to do, never a traceback from subprocess."""

from __future__ import annotations

import re

import pytest
from conftest import venv_env

from resnet9 import dvc_cli


def test_without_dvc_on_path_require_and_run_say_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    for call in (dvc_cli.require, lambda: dvc_cli.run("status", cwd=tmp_path)):
        with pytest.raises(dvc_cli.DvcError, match="dvc not found on PATH") as err:
            call()
        assert "source .venv/bin/activate" in str(err.value)


def test_a_failing_command_names_itself_its_exit_status_and_dvcs_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", venv_env()["PATH"])
    dvc_cli.require()
    with pytest.raises(dvc_cli.DvcError) as err:
        dvc_cli.run("status", "--json", cwd=tmp_path)  # not a DVC repository
    where = re.escape(str(tmp_path))
    assert re.fullmatch(rf"dvc status --json failed \(exit [1-9]\d*\) in {where}: "
                        r"ERROR: you are not inside of a DVC repository.*", str(err.value))


def test_a_command_that_succeeds_gives_its_stdout(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", venv_env()["PATH"])
    assert dvc_cli.run("version", cwd=tmp_path).startswith("DVC version: ")


def test_the_reason_is_dvcs_error_lines_not_a_trailing_support_link():
    stderr = ("ERROR: unexpected error - boom\n\n"
              "Having any troubles? Hit us up at https://dvc.org/support, we are always happy "
              "to help!\n")
    assert dvc_cli.reason(stderr) == "ERROR: unexpected error - boom"
    assert dvc_cli.reason("warning\nlast words\n") == "last words"
    assert dvc_cli.reason("") == "no message"
