"""python -m resnet9.predict: the same predictions as the evaluate stage, every image mode, one
line and the documented exit status for each bad image or model file, Grad-CAM, --info."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import COMMITTED_PARAMS_TEXT, colour_arrays, subprocess_env
from resnet9 import cifar10, data, loaders, model_file, paths, precision, predict

ENV = subprocess_env(OMP_NUM_THREADS="1")
HINT = "rerun `dvc repro train` to train it, or `dvc pull` to fetch it from the remote"
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: torch on one thread


def run_predict(capsys, *args: str) -> tuple[int, str, str]:
    """``predict.main(args)`` in this process: (exit status, stdout, stderr)."""
    try:
        code = predict.main([*args, "--device", "cpu"])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def _stage_workdir(tmp_path: Path, model: Path, n_test: int = 40) -> Path:
    """A directory with params.yaml, a synthetic data/cifar10 and the model file."""
    work = tmp_path / "work"
    (work / paths.DATASET_DIR).mkdir(parents=True)
    x, y = colour_arrays(n_test, seed=1)
    np.savez(work / paths.ARRAYS_FILE, x_train=x, y_train=y, x_test=x, y_test=y)
    (work / paths.META_FILE).write_text(json.dumps({"sha256": {"test": "synthetic"}}))
    (work / "params.yaml").write_text(COMMITTED_PARAMS_TEXT)
    shutil.copy(model, work / paths.MODEL_FILE)
    return work


def _run_stage(work: Path, stage: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=work, env=ENV,
                          capture_output=True, text=True, timeout=300)


def test_predictions_on_test_images_equal_the_evaluate_stage(tmp_path, tiny_model, capsys):
    work = _stage_workdir(tmp_path, tiny_model)
    proc = _run_stage(work, "evaluate")
    assert proc.returncode == 0, proc.stderr
    evaluated = pd.read_csv(work / paths.CONFUSION_CSV).predicted.tolist()
    assert len(set(evaluated)) > 2  # the check means something: the classes vary

    _, test = data.load_dataset(work / paths.DATASET_DIR)
    files = []
    for i, image in enumerate(test.x):
        files.append(tmp_path / f"test_{i:02d}.png")
        Image.fromarray(image).save(files[-1])
    code, out, err = run_predict(capsys, *map(str, files), "--model", str(tiny_model),
                                 "--json", "--top-k", "10")
    assert code == 0, err
    result = json.loads(out)
    predicted = [p["top_k"][0]["class"] for p in result["predictions"]]
    assert predicted == evaluated
    assert [p["file"] for p in result["predictions"]] == list(map(str, files))

    # The probabilities too: softmax of the logits the evaluate stage computes, in its batches
    # and under the precision both resolve from auto on this CPU (bf16 where it is native: there
    # another batch size can round a logit differently).
    cpu = torch.device("cpu")
    net, _ = model_file.load_trained(tiny_model, cpu)
    from resnet9 import engine
    logits, _ = engine.predict(net, loaders.test_loader(test, cpu), cpu,
                               precision.resolve("auto", cpu))
    expected = torch.softmax(logits, 1)
    for row, p in zip(expected, result["predictions"]):
        got = {t["class"]: t["probability"] for t in p["top_k"]}
        assert [got[c] for c in cifar10.CLASSES] == pytest.approx(row.tolist(), abs=1e-5)


def _save(tmp_path: Path, name: str, image: Image.Image, **kw) -> Path:
    path = tmp_path / name
    image.save(path, **kw)
    return path


def _images_of_every_mode(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (120, 200, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (64, 48, 4), dtype=np.uint8), "RGBA")
    palette_transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette_transparent.info["transparency"] = 0
    return [
        _save(tmp_path, "rgb.png", rgb),
        _save(tmp_path, "rgb.jpg", rgb, quality=90),
        _save(tmp_path, "rgba.png", rgba),
        _save(tmp_path, "gray.png", rgb.convert("L")),
        _save(tmp_path, "gray.jpg", rgb.convert("L")),
        _save(tmp_path, "gray_alpha.png", rgba.convert("LA")),
        _save(tmp_path, "palette.png", rgb.convert("P", palette=Image.Palette.ADAPTIVE)),
        _save(tmp_path, "palette_transparent.png", palette_transparent),
        _save(tmp_path, "cmyk.jpg", rgb.convert("CMYK")),
        _save(tmp_path, "tiny.png", rgb.resize((7, 5))),
        _save(tmp_path, "large.jpg", rgb.resize((1600, 900))),
        _save(tmp_path, "no_suffix", rgb, format="PNG"),
    ]


def test_every_image_mode_and_size_becomes_a_32x32_rgb_input(tmp_path):
    for path in _images_of_every_mode(tmp_path):
        image = predict.prepare(path)
        assert image.mode == "RGB" and image.size == (32, 32), path.name


def test_every_image_mode_is_predicted(tmp_path, tiny_model, capsys):
    files = _images_of_every_mode(tmp_path)
    code, out, err = run_predict(capsys, *map(str, files), "--model", str(tiny_model), "--json")
    assert code == 0 and err == ""
    result = json.loads(out)
    assert [p["file"] for p in result["predictions"]] == list(map(str, files))
    assert result["errors"] == []
    for p in result["predictions"]:
        probs = [t["probability"] for t in p["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
        assert {t["class"] for t in p["top_k"]} <= set(cifar10.CLASSES)


def test_text_output_is_one_line_per_image(tmp_path, tiny_model, capsys):
    files = _images_of_every_mode(tmp_path)[:2]
    code, out, _ = run_predict(capsys, *map(str, files), "--model", str(tiny_model),
                               "--top-k", "2")
    assert code == 0
    lines = out.splitlines()
    assert [line.split(": ")[0] for line in lines] == list(map(str, files))
    assert all(len(line.split(", ")) == 2 for line in lines)


def test_a_32x32_rgb_image_passes_unchanged_and_others_are_centre_cropped(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    same = predict.prepare(_save(tmp_path, "same.png", Image.fromarray(pixels)))
    assert np.array_equal(np.asarray(same), pixels)

    # 96 wide, 32 high: red | green | blue thirds -> the centred square is all green.
    wide = np.zeros((32, 96, 3), dtype=np.uint8)
    wide[:, :32, 0] = wide[:, 32:64, 1] = wide[:, 64:, 2] = 255
    crop = np.asarray(predict.prepare(_save(tmp_path, "wide.png", Image.fromarray(wide))))
    assert (crop[..., 1] == 255).all() and (crop[..., [0, 2]] == 0).all()


def test_transparent_pixels_become_white(tmp_path):
    clear = Image.new("RGBA", (40, 40), (10, 20, 30, 0))
    assert (np.asarray(predict.prepare(_save(tmp_path, "clear.png", clear))) == 255).all()


def test_normalization_uses_the_model_files_constants(tiny_model):
    saved = model_file.load_model_file(tiny_model)
    norm = saved["normalization"]
    image = Image.new("RGB", (32, 32), (255, 0, 128))
    x = predict.to_tensor([image], norm["mean"], norm["std"])
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), norm["mean"], norm["std"])]
    assert x[0, :, 0, 0].tolist() == pytest.approx(expected, abs=1e-6)


def _bad_images(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = _save(tmp_path, "good.png", Image.new("RGB", (32, 32), (200, 30, 30)))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    jpeg = _save(tmp_path, "cut.jpg", Image.new("RGB", (64, 64), (0, 90, 0)))
    cut_jpeg = tmp_path / "cut_jpeg.jpg"
    cut_jpeg.write_bytes(jpeg.read_bytes()[:200])
    (tmp_path / "notes.png").write_text("not an image\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    return {
        "missing": (tmp_path / "missing.png", "not found"),
        "text": (tmp_path / "notes.png", "not an image Pillow can read"),
        "empty": (tmp_path / "empty.jpg", "not an image Pillow can read"),
        "directory": (tmp_path / "folder.png", "is a directory"),
        "truncated png": (truncated, "truncated or corrupt"),
        "truncated jpeg": (cut_jpeg, "truncated or corrupt"),
    }


@pytest.mark.parametrize("case", ["missing", "text", "empty", "directory", "truncated png",
                                  "truncated jpeg"])
def test_a_bad_image_gives_one_line_and_exit_1_and_the_others_are_predicted(
        tmp_path, tiny_model, capsys, case):
    bad, reason = _bad_images(tmp_path)[case]
    good = tmp_path / "good.png"
    code, out, err = run_predict(capsys, str(good), str(bad), str(good), "--model",
                                 str(tiny_model))
    assert code == predict.EXIT_BAD_IMAGE == 1
    assert len(err.splitlines()) == 1
    assert err.startswith(f"predict: error: {bad}: ") and reason in err
    assert [line.split(": ")[0] for line in out.splitlines()] == [str(good), str(good)]


def test_bad_images_are_listed_in_the_json_output(tmp_path, tiny_model, capsys):
    cases = _bad_images(tmp_path)
    bad = [str(p) for p, _ in cases.values()]
    code, out, err = run_predict(capsys, str(tmp_path / "good.png"), *bad, "--model",
                                 str(tiny_model), "--json")
    assert code == 1 and len(err.splitlines()) == len(bad)
    result = json.loads(out)
    assert [e["file"] for e in result["errors"]] == bad
    assert [p["file"] for p in result["predictions"]] == [str(tmp_path / "good.png")]


def _bad_models(tmp_path: Path, tiny_model: Path) -> dict[str, tuple[Path, str]]:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_model.read_bytes()[:5000])
    text = tmp_path / "text.pt"
    text.write_text("version https://git-lfs.github.com/spec/v1\n")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    wrong_width = tmp_path / "wrong_width.pt"
    saved = torch.load(tiny_model, weights_only=True)
    torch.save({**saved, "model_params": {"width_multiplier": 0.25}}, wrong_width)
    return {
        "missing": (tmp_path / "missing.pt", "not found"),
        "truncated": (truncated, "truncated or corrupt"),
        "text": (text, "not a model file (torch.save writes a zip archive; this file starts "
                       "with b'version https:"),
        "foreign": (foreign, "not a ResNet-9 model file"),
        "tensor": (tensor, "holds a Tensor"),
        "wrong width": (wrong_width, "do not fit"),
    }


BAD_MODELS = ["missing", "truncated", "text", "foreign", "tensor", "wrong width"]


@pytest.mark.parametrize("case", BAD_MODELS)
def test_a_bad_model_file_gives_one_line_naming_it_and_what_to_do(tmp_path, tiny_model, capsys,
                                                                   case):
    model, reason = _bad_models(tmp_path, tiny_model)[case]
    image = _save(tmp_path, "x.png", Image.new("RGB", (32, 32)))
    code, out, err = run_predict(capsys, str(image), "--model", str(model))
    assert code == predict.EXIT_BAD_MODEL == 3 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"predict: error: {model}: ") and reason in err and HINT in err
    code, _, err_info = run_predict(capsys, "--info", "--model", str(model))
    assert code == 3 and err_info == err


@pytest.mark.parametrize("stage", ["evaluate", "analyze", "export"])
def test_the_stages_report_a_bad_model_file_in_one_line(tmp_path, tiny_model, stage):
    work = _stage_workdir(tmp_path, tiny_model)
    (work / paths.MODEL_FILE).write_bytes(tiny_model.read_bytes()[:5000])
    proc = _run_stage(work, stage)
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"{stage}: error: {paths.MODEL_FILE}: not a readable model "
                                  "file, truncated or corrupt")
    assert HINT in proc.stderr


def test_usage_errors_exit_2(tmp_path, tiny_model, capsys):
    image = _save(tmp_path, "x.png", Image.new("RGB", (32, 32)))
    assert run_predict(capsys, "--model", str(tiny_model))[0] == 2  # no image
    assert run_predict(capsys, str(image), "--model", str(tiny_model), "--top-k", "11")[0] == 2
    assert run_predict(capsys, str(image), "--model", str(tiny_model), "--top-k", "0")[0] == 2


def test_gradcam_writes_one_overlay_per_image(tmp_path, tiny_model, capsys):
    files = _images_of_every_mode(tmp_path)[:3]
    out_dir = tmp_path / "cams"
    code, out, _ = run_predict(capsys, *map(str, files), "--model", str(tiny_model),
                               "--gradcam", str(out_dir), "--json")
    assert code == 0
    written = [p["gradcam"] for p in json.loads(out)["predictions"]]
    assert written == [str(out_dir / f"{f.name}.gradcam.png") for f in files]
    for path in written:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_info_prints_the_provenance_and_what_using_the_model_needs(tiny_model, capsys):
    code, out, _ = run_predict(capsys, "--info", "--model", str(tiny_model), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["classes"] == list(cifar10.CLASSES)
    assert info["width_multiplier"] == 0.125 and info["input_size"] == [32, 32]
    assert set(info["normalization"]) == {"mean", "std"}
    prov = info["provenance"]
    for key in ("git_commit", "git_dirty", "torch_version", "cuda_version", "device_name",
                "dataset_sha256", "params", "train_seconds", "date"):
        assert key in prov, key
    assert prov["torch_version"] == torch.__version__
    assert info["file"]["bytes"] == tiny_model.stat().st_size

    code, text, _ = run_predict(capsys, "--info", "--model", str(tiny_model))
    assert code == 0
    for key in ("classes:", "normalization:", "provenance:", "torch_version:", "device_name:",
                "dataset_sha256:", "train_seconds:", "date:", "git_commit:"):
        assert key in text, key


def test_runs_as_a_module_with_nothing_but_the_model_file(tmp_path, tiny_model):
    """From an empty directory: no params.yaml, no dataset."""
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(tiny_model, empty / "m.pt")
    Image.new("L", (50, 70), 128).save(empty / "gray.jpg")
    proc = subprocess.run([sys.executable, "-m", "resnet9.predict", "gray.jpg", "--model",
                           "m.pt", "--device", "cpu"], cwd=empty, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("gray.jpg: ")
    assert sorted(p.name for p in empty.iterdir()) == ["gray.jpg", "m.pt"]


RUN_AND_LIST_MODULES = """
import runpy, sys
sys.argv = ["predict", *sys.argv[1:]]
try:
    runpy.run_module("resnet9.predict", run_name="__main__")
except SystemExit:
    pass
import resnet9.export, stages.export  # the export stage's code, imported too
print([m for m in ("albumentations", "cv2") if m in sys.modules])
"""


def test_predict_and_export_import_neither_albumentations_nor_opencv(tmp_path, tiny_model):
    image = tmp_path / "x.png"
    Image.fromarray(colour_arrays(1)[0][0]).save(image)
    proc = subprocess.run([sys.executable, "-c", RUN_AND_LIST_MODULES, str(image), "--model",
                           str(tiny_model), "--gradcam", str(tmp_path / "cams")],
                          capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0 and "x.png: " in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def test_a_model_file_from_before_logit_scale_loads_as_scale_one(tmp_path, tiny_model):
    saved = torch.load(tiny_model, weights_only=True)
    assert saved["model_params"]["logit_scale"] == 1.0
    older = tmp_path / "older.pt"
    torch.save({**saved, "model_params": {"width_multiplier": saved["model_params"]
                                          ["width_multiplier"]}}, older)
    x = torch.randn(2, 3, 32, 32)
    now, _ = model_file.load_trained(tiny_model, torch.device("cpu"))
    before, _ = model_file.load_trained(older, torch.device("cpu"))
    with torch.no_grad():
        assert torch.equal(before(x), now(x))
