"""resnet9.provenance: git state, versions, device, data, params, time; stored in the model."""

from __future__ import annotations

import datetime
import json
import subprocess

import torch

from resnet9 import paths, provenance

CPU = torch.device("cpu")


def _git(repo, *args):
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_records_the_commit_and_whether_the_code_is_dirty(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / paths.EVALUATE_METRICS).write_text("{}\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "c")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert provenance.git_state(tmp_path) == {"git_commit": head, "git_dirty": False,
                                              "git_dirty_files": []}

    (tmp_path / paths.EVALUATE_METRICS).write_text('{"accuracy": 1}\n')  # pipeline output
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc/.gitignore").write_text("/tmp\n")
    (tmp_path / "params.yaml").write_text("train: {epochs: 3}\n")  # what `dvc exp run -S` writes
    assert provenance.git_state(tmp_path)["git_dirty"] is False

    (tmp_path / "code.py").write_text("x = 2\n")
    state = provenance.git_state(tmp_path)
    assert state["git_dirty"] is True and state["git_dirty_files"] == ["code.py"]


def test_outside_git_the_git_fields_are_none(tmp_path):
    assert provenance.git_state(tmp_path) == {"git_commit": None, "git_dirty": None,
                                              "git_dirty_files": None}


def test_collect_has_every_field_and_survives_json_and_torch_load(tmp_path):
    params = {"model": {"width_multiplier": 0.25}, "train": {"epochs": 2, "max_lr": "auto"}}
    prov = provenance.collect(params=params, dataset_sha256={"train": "ab", "test": "cd"},
                              train_seconds=12.5, device=CPU, cwd=tmp_path)
    assert prov["torch_version"] == torch.__version__
    assert prov["cuda_version"] == torch.version.cuda
    assert prov["device"] == "cpu" and prov["device_name"]
    assert prov["dataset_sha256"] == {"train": "ab", "test": "cd"}
    assert prov["params"] == params and prov["train_seconds"] == 12.5
    date = datetime.datetime.fromisoformat(prov["date"])
    assert date.tzinfo is not None
    assert abs((datetime.datetime.now(datetime.timezone.utc) - date).total_seconds()) < 60
    assert json.loads(json.dumps(prov)) == prov
    torch.save({"provenance": prov}, tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)["provenance"] == prov
