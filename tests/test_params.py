import importlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from resnet9 import params
from resnet9.params import ParamsError
from stages import runner

from conftest import ROOT, committed_params, subprocess_env


def shipped(section: str) -> dict:
    """Section ``section`` of the shipped params.yaml, the one source of values."""
    return dict(committed_params()[section])


# For every key: (wrong type, out of range) values. Choices count an unknown value as out of range.
BAD = {
    "data": {"source": [123, ""], "train_subset": ["many", 5], "test_subset": [1.5, 10_001],
             "seed": ["x", -1]},
    "model": {"width_multiplier": ["wide", 0], "logit_scale": ["x", 0]},
    "lr_find": {"start_lr": ["low", 0], "end_lr": [[1], -1], "num_iter": [2.5, 1],
                "step_mode": [1, "log"], "rule": [None, "slide"], "factor": ["a", 0],
                "smooth_f": ["x", 1.0],
                "repeats": [1.5, 0]},
    "recipe": {"optimizer": ["sgd", 1], "batch_size": ["512", 0], "weight_decay": ["x", -1e-4],
               "decay_bn_and_bias": ["no", 0], "label_smoothing": ["x", 1.0],
               "seed": [0.5, -3], "device": [0, "tpu"], "precision": ["half", 16],
               "num_workers": ["many", -1], "pad_mode": [0, "edge"],
               "augment_backend": [None, "dali"]},
    "train": {"epochs": [2.0, 0], "max_lr": ["fast", 0], "peak_epoch": ["five", -1],
              "div_factor": ["x", 0.5], "ema_decay": ["x", 1.0], "compile": ["yes", 1],
              "nproc_per_node": ["two", 0]},
    "evaluate": {"tta": ["yes", 1]},
    "analyze": {"num_misclassified": ["all", 0], "gradcam_layer": [3, "fc"]},
}


def test_every_key_is_covered():
    assert {s: set(keys) for s, keys in BAD.items()} == {
        s: set(shipped(s)) for s in params.SECTIONS}


def test_the_schema_holds_no_defaults_that_could_disagree_with_params_yaml():
    for section, model in params.SECTIONS.items():
        assert all(f.is_required() for f in model.model_fields.values()), section


@pytest.mark.parametrize("section, key, value, expected", [
    ("train", "epochs", 0, "an integer in [1, 1,000]"),
    ("train", "max_lr", "fast", "a number in (0, 100] or 'auto'"),
    ("recipe", "num_workers", -1, "an integer in [0, 64] or 'auto'"),
    ("recipe", "device", "tpu", "one of 'auto', 'cpu', 'cuda', 'mps'"),
    ("train", "compile", "yes", "true or false"),
    ("data", "train_subset", 5, "an integer in [10, 50,000] or null"),
    ("train", "div_factor", 0.5, "a number in [1, 1,000,000]"),
    ("data", "seed", -1, "an integer >= 0"),
    ("data", "source", "", "a non-empty string"),
])
def test_the_allowed_values_are_spelled_out(section, key, value, expected):
    with pytest.raises(ParamsError) as err:
        params.parse(section, {**shipped(section), key: value})
    assert str(err.value) == f"{section}.{key}: {value!r} is not allowed; expected {expected}"


def test_shipped_params_yaml_validates(committed_params_file):
    for section in params.SECTIONS:
        params.load(section, path=committed_params_file)


@pytest.mark.parametrize("section, key, value",
                         [(s, k, v) for s, keys in BAD.items() for k, vs in keys.items()
                          for v in vs])
def test_bad_value_names_key_value_and_what_is_allowed(section, key, value):
    raw = {**shipped(section), key: value}
    with pytest.raises(ParamsError) as err:
        params.parse(section, raw)
    message = str(err.value)
    assert message.startswith(f"{section}.{key}: {value!r} is not allowed; expected ")
    assert "\n" not in message


@pytest.mark.parametrize("section", list(params.SECTIONS))
def test_unknown_key(section):
    with pytest.raises(ParamsError, match=rf"^{section}\.lerning_rate: unknown key; expected one of"):
        params.parse(section, {**shipped(section), "lerning_rate": 1})


def test_missing_key():
    raw = shipped("train")
    del raw["epochs"]
    with pytest.raises(ParamsError, match=r"^train\.epochs: missing"):
        params.parse("train", raw)


@pytest.mark.parametrize("peak", [24, 30])
def test_peak_epoch_must_come_before_the_last_epoch(peak):
    with pytest.raises(ParamsError, match=rf"train\.peak_epoch: {peak} .*below train\.epochs \(24\)"):
        params.parse("train", {**shipped("train"), "peak_epoch": peak})


def test_batch_size_must_give_every_process_an_image(tmp_path):
    doc = committed_params()
    doc["recipe"]["batch_size"], doc["train"]["nproc_per_node"] = 2, 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ParamsError, match=r"^recipe\.batch_size: 2 is not allowed; expected at "
                                          r"least train\.nproc_per_node \(4\)"):
        params.load("recipe", "train", path=tmp_path / "params.yaml")


def test_every_stage_refuses_a_bad_value_in_a_section_it_does_not_read(tmp_path):
    doc = committed_params()
    doc["train"]["epochs"] = "abc"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    for sections in [("data",), ("model", "lr_find", "recipe"), ("evaluate", "recipe")]:
        with pytest.raises(ParamsError, match=r"^train\.epochs: 'abc' is not allowed"):
            params.load(*sections, path=tmp_path / "params.yaml")
    with pytest.raises(ParamsError, match=r"^train\.epochs: 'abc' is not allowed"):
        params.validate(tmp_path / "params.yaml")  # the export stage reads no section


def test_end_lr_must_exceed_start_lr():
    with pytest.raises(ParamsError, match=r"lr_find\.end_lr"):
        params.parse("lr_find", {**shipped("lr_find"), "start_lr": 0.1, "end_lr": 0.01})


def test_yaml_11_exponent_without_dot_is_a_number():
    doc = yaml.safe_load("max_lr: 1e-3")
    assert doc["max_lr"] == "1e-3"  # PyYAML's reading, which the params layer corrects
    p = params.parse("train", {**shipped("train"), "max_lr": doc["max_lr"]})
    assert p.max_lr == pytest.approx(1e-3)


def test_booleans_are_not_integers():
    with pytest.raises(ParamsError, match="train.epochs: True"):
        params.parse("train", {**shipped("train"), "epochs": True})


def test_load_reports_missing_file_and_section(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        params.load("data", path=tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("data: {}\n")
    with pytest.raises(ParamsError, match="section 'train' is missing"):
        params.load("train", path=tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        params.load("train", path=tmp_path / "params.yaml")


def _params_with(tmp_path: Path, section: str, key: str, value) -> None:
    doc = committed_params()
    doc[section][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))


def _assert_refused(stage: str, section: str, key: str, value, status: int, stderr: str,
                    folder: Path) -> None:
    assert status == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{stage}: error: {section}.{key}: {value!r}")
    assert sorted(p.name for p in folder.iterdir()) == ["params.yaml"]


# In-process: each stage's main under the runner, as `python -m stages.<stage>` runs it (the
# next test runs that command itself once).
@pytest.mark.parametrize("stage, section, key, value", [
    ("download", "data", "train_subset", 0),
    ("lr_find", "lr_find", "step_mode", "log"),
    ("train", "train", "epochs", 0),
    ("train", "recipe", "device", "cuda"),  # no CUDA on the test machine
    ("lr_find", "recipe", "batch_size", 0),
    ("evaluate", "evaluate", "tta", "yes"),
    ("analyze", "analyze", "gradcam_layer", "fc"),
    ("export", "train", "epochs", "abc"),  # export reads no section, and still validates
])
def test_stage_with_bad_params_exits_nonzero_with_one_line_and_writes_nothing(
        tmp_path, monkeypatch, capsys, stage, section, key, value):
    import torch

    if value == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _params_with(tmp_path, section, key, value)
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(f"stages.{stage}")
    handler = signal.getsignal(signal.SIGTERM)  # the runner installs its own
    try:
        with pytest.raises(SystemExit) as exited:
            runner.run_stage(stage, module.main)
    finally:
        signal.signal(signal.SIGTERM, handler)
    _assert_refused(stage, section, key, value, exited.value.code, capsys.readouterr().err,
                    tmp_path)


def test_the_stage_command_refuses_bad_params_the_same_way(tmp_path):
    _params_with(tmp_path, "data", "train_subset", 0)
    proc = subprocess.run([sys.executable, "-m", "stages.download"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env=subprocess_env())
    _assert_refused("download", "data", "train_subset", 0, proc.returncode, proc.stderr,
                    tmp_path)


def test_a_renamed_key_names_its_new_name():
    old = {**shipped("lr_find"), "fraction": 0.1}
    del old["factor"]
    with pytest.raises(ParamsError) as err:
        params.parse("lr_find", old)
    assert str(err.value).startswith("lr_find.fraction: renamed; use lr_find.factor")


def test_no_test_reads_the_workspace_params_yaml():
    """`dvc exp run -S` and `make quick` rewrite the workspace's params.yaml, and the suite must
    pass after them: tests take the committed params from conftest (COMMITTED_PARAMS_TEXT,
    committed_params(), committed_params_file), never ROOT's file."""
    offenders = [f"{path.name}:{n}" for path in sorted((ROOT / "tests").glob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if 'ROOT / "params.yaml"' in line and "git show" not in line
                 and path.name != "conftest.py"]
    assert offenders == []


def test_a_stage_run_by_another_interpreter_says_so_in_one_line():
    """`.venv/bin/dvc repro` without the venv active runs the stages with another `python`:
    one line naming it, not an ImportError's traceback. (-S: no site-packages, like a bare
    system Python.)"""
    proc = subprocess.run([sys.executable, "-S", "-m", "stages.check_params"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"stages: {sys.executable} has no torch, pandas, pydantic, yaml: run dvc with the "
        "project's venv active (source .venv/bin/activate; make repro and make quick do it)"]
