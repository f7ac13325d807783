"""resnet9.export: ONNX, TorchScript and ExportedProgram (.pt2) files that agree with torch
eager, checked before they are written; onnx and onnxruntime stay out of the train and evaluate
stages."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, colour_arrays
from resnet9 import export, model_file, preprocess

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model):
    """The tiny model exported and checked on 50 synthetic images:
    (metrics, onnx path, TorchScript path, .pt2 path, saved)."""
    out = tmp_path_factory.mktemp("export")
    net, saved = model_file.load_trained(tiny_model, CPU)
    images, _ = colour_arrays(50, seed=2)
    metrics = export.export_and_check(net, saved, images, out / "model.onnx", out / "model.ts",
                                      out / "model.pt2", speed_batch=64, min_seconds=0.05)
    return metrics, out / "model.onnx", out / "model.ts", out / "model.pt2", saved


def test_exports_agree_with_torch_eager(exported):
    metrics, onnx_path, ts_path, pt2_path, _ = exported
    assert metrics["images"] == 50 and metrics["opset"] == export.OPSET
    for name, path in (("onnx", onnx_path), ("torchscript", ts_path),
                       ("exported_program", pt2_path)):
        m = metrics[name]
        assert m["top1_agreement"] == 1.0 and m["top1_disagreements"] == 0, name
        assert m["max_abs_logit_diff"] < 1e-4, name
        assert m["file_bytes"] == path.stat().st_size > 0
    speed = metrics["speed"]
    assert speed["batch_size"] == 64
    assert speed["onnxruntime_cpu_images_per_s"] > 0 and speed["torch_eager_cpu_images_per_s"] > 0
    json.dumps(metrics)  # metrics/export.json


def _inputs(saved, n, seed=3):
    images, _ = colour_arrays(n, seed=seed)
    norm = saved["normalization"]
    return preprocess.normalize(torch.from_numpy(images), norm["mean"], norm["std"])


def test_onnx_has_a_dynamic_batch_dimension_and_the_metadata(exported, tiny_model):
    import onnx
    import onnxruntime

    _, onnx_path, _, _, saved = exported
    model = onnx.load(str(onnx_path))
    assert model.opset_import[0].version == export.OPSET
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == saved["classes"]
    assert json.loads(meta["mean"]) == saved["normalization"]["mean"]
    assert json.loads(meta["input_size"]) == [32, 32]
    net, _ = model_file.load_trained(tiny_model, CPU)
    for n in (1, 7):
        x = _inputs(saved, n)
        (logits,) = session.run(None, {export.INPUT_NAME: x.numpy()})
        with torch.no_grad():
            assert np.allclose(logits, net(x).numpy(), atol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_loads_without_the_package_classes(exported, tiny_model):
    _, _, ts_path, _, saved = exported
    extra = {"meta.json": ""}
    scripted = torch.jit.load(str(ts_path), _extra_files=extra)
    assert json.loads(json.loads(extra["meta.json"])["classes"]) == saved["classes"]
    x = _inputs(saved, 5)
    net, _ = model_file.load_trained(tiny_model, CPU)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-5)


def test_exported_program_loads_with_the_metadata_at_any_batch_size(exported, tiny_model):
    """What docs/use-the-model.md shows: ``torch.export.load(path).module()(x)``, at batch 1
    and 7 (the program was traced at batch 2: the batch dimension is dynamic)."""
    _, _, _, pt2_path, saved = exported
    extra = {"meta.json": ""}
    module = torch.export.load(str(pt2_path), extra_files=extra).module()
    meta = json.loads(extra["meta.json"])
    assert json.loads(meta["classes"]) == saved["classes"]
    assert json.loads(meta["mean"]) == saved["normalization"]["mean"]
    assert json.loads(meta["input_size"]) == [32, 32]
    net, _ = model_file.load_trained(tiny_model, CPU)
    for n in (1, 7):
        x = _inputs(saved, n)
        with torch.no_grad():
            logits = module(x)
            assert logits.shape == (n, 10) and logits.dtype == torch.float32
            assert torch.allclose(logits, net(x), atol=1e-5)


def test_a_disagreeing_export_fails_and_writes_nothing(tmp_path, tiny_model, monkeypatch):
    real_session = export.onnx_session

    class Shuffled:  # onnxruntime whose logits are rolled by one class: every top-1 differs
        def __init__(self, path):
            self.session = real_session(path)

        def run(self, outputs, feed):
            return [np.roll(self.session.run(outputs, feed)[0], 1, axis=1)]

    monkeypatch.setattr(export, "onnx_session", Shuffled)
    _refused_and_nothing_written(tmp_path, tiny_model, "onnx")


def _refused_and_nothing_written(tmp_path, tiny_model, ext: str) -> None:
    """export_and_check on 20 images fails naming model.<ext>, and writes no file."""
    net, saved = model_file.load_trained(tiny_model, CPU)
    images, _ = colour_arrays(20, seed=4)
    paths = tmp_path / "model.onnx", tmp_path / "model.ts", tmp_path / "model.pt2"
    with pytest.raises(export.ExportError, match=rf"model\.{ext}: top-1 class differs from torch "
                       r"eager on \d+ of 20 test images .*expected 100% agreement"):
        export.export_and_check(net, saved, images, *paths, min_seconds=0.01)
    assert list(tmp_path.iterdir()) == []


def test_a_disagreeing_exported_program_fails_and_writes_nothing(tmp_path, tiny_model,
                                                                 monkeypatch):
    real_load = export.load_program

    def shuffled(path):  # the loaded program's logits rolled by one class: every top-1 differs
        module = real_load(path)
        return lambda x: module(x).roll(1, dims=1)

    monkeypatch.setattr(export, "load_program", shuffled)
    _refused_and_nothing_written(tmp_path, tiny_model, "pt2")


def test_train_evaluate_and_predict_import_without_onnx():
    """A machine without onnx, onnxscript and onnxruntime can train, evaluate and predict."""
    code = (
        "import sys\n"
        "for name in ('onnx', 'onnxruntime', 'onnxscript'):\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        "import stages.train, stages.evaluate, stages.analyze, stages.lr_find, resnet9.predict\n"
        "import resnet9.export\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
