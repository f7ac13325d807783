"""scripts/reference_status.py: from `dvc status --json`, which stages' code, params or outputs
moved away from dvc.lock (the committed reference is stale), apart from outputs that are only
missing from this cache (normal on a fresh clone)."""

from __future__ import annotations

import importlib.util

from conftest import ROOT


def module():
    spec = importlib.util.spec_from_file_location("reference_status",
                                                  ROOT / "scripts/reference_status.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_missing_outputs_alone_are_not_a_stale_reference():
    fresh_clone = {  # the shape DVC 3.67 prints
        "download": [{"changed outs": {"data/cifar10": "not in cache"}}],
        "train": [{"changed deps": {"data/cifar10": "deleted"}},
                  {"changed outs": {"data/model.pt": "not in cache"}}],
    }
    found = module().changes(fresh_clone)
    assert all(not c["deps"] and not c["params"] and not c["outs"] for c in found.values())
    assert found["train"]["missing"] == ["data/cifar10 (another stage's output)",
                                         "data/model.pt (not in cache)"]


def test_changed_code_params_and_outputs_are_named_per_stage():
    stale = {
        "train": [{"changed deps": {"stages/train.py": "modified",
                                    "params.yaml": {"train.epochs": "modified"}}},
                  {"changed outs": {"metrics/train.json": "modified"}}],
        "lr_find": [{"changed deps": {"params.yaml": {"lr_find": "modified"}}}],
    }
    found = module().changes(stale)
    assert found["train"] == {"deps": ["stages/train.py (modified)"],
                              "params": ["params.yaml: train.epochs (modified)"],
                              "outs": ["metrics/train.json (modified)"], "missing": []}
    assert found["lr_find"]["params"] == ["params.yaml: lr_find (modified)"]


def test_without_dvc_on_path_it_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert module().main() == 2
    err = capsys.readouterr().err
    assert err.startswith("reference_status: error: dvc not found on PATH")
    assert "source .venv/bin/activate" in err and "Traceback" not in err
