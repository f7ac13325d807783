"""Export the trained network to ONNX, TorchScript and a torch.export ExportedProgram, and check
the exports against torch.

- ``data/model.onnx``: torch's exporter (``torch.onnx.export(dynamo=True)``, onnxscript),
  ONNX opset :data:`OPSET`, one input ``input`` (N, 3, 32, 32) float32 normalized, with a
  dynamic batch dimension ``batch``, one output ``logits`` (N, 10) float32. The metadata
  (``custom_metadata_map`` in onnxruntime) holds what a runtime needs without this repository:
  ``classes`` (JSON list), ``mean`` and ``std`` (JSON lists, RGB, [0, 1] pixel scale),
  ``input_size`` (JSON ``[H, W]``), ``width_multiplier``, ``git_commit``.
- ``data/model.ts``: ``torch.jit.script`` of the network (same input and output), the same
  metadata as ``meta.json`` in its extra files (``torch.jit.load(path, _extra_files=...)``).
  torch marks TorchScript deprecated in favour of ``torch.export``; it still loads in C++
  (libtorch) without Python, which is why it is shipped.
- ``data/model.pt2``: ``torch.export.export`` of the network (an ExportedProgram, the format
  torch recommends instead of TorchScript), same input and output, batch dimension dynamic
  (``torch.export.Dim``), the same metadata as ``meta.json`` in its extra files
  (``torch.export.load(path, extra_files=...)``; ``.module()`` is the callable network). Python
  with torch loads it; C++ only after AOTInductor compiles it, hence TorchScript besides.

:func:`export_and_check` writes all three to temporary files, runs onnxruntime (CPU), the
TorchScript model and the loaded ExportedProgram on test images against torch eager, and moves
them into place only when each agrees with torch on the top-1 class of every image.

onnx, onnxscript and onnxruntime are imported inside the functions that need them, so the rest
of the package (train, evaluate) runs where they are not installed.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from resnet9 import PipelineError, atomic_io, paths, preprocess, provenance

OPSET = 18  # torch 2.14's native onnxscript opset: exported without a version conversion
INPUT_NAME, OUTPUT_NAME = "input", "logits"
CHECK_IMAGES = 1_000  # test images the exports are checked on
SPEED_BATCH = 256  # batch size of the images/s measurement


class ExportError(PipelineError):
    """An exported model disagrees with torch eager, or cannot be written."""


def metadata(saved: dict) -> dict[str, str]:
    """What a runtime needs besides the weights, as string key-value pairs, from a model file's
    dict (:func:`resnet9.model_file.save_trained`)."""
    return {
        "classes": json.dumps(list(saved["classes"])),
        "mean": json.dumps(list(saved["normalization"]["mean"])),
        "std": json.dumps(list(saved["normalization"]["std"])),
        "input_size": json.dumps(list(saved["input_size"])),
        "width_multiplier": str(saved["model_params"]["width_multiplier"]),
        "git_commit": str((saved.get("provenance") or {}).get("git_commit")),
    }


def export_onnx(net: torch.nn.Module, path: Path | str, meta: dict[str, str],
                input_size: tuple[int, int]) -> None:
    """Write ``net`` (eval mode, CPU) to ``path`` as ONNX (see the module docstring), weights
    inside the file, ``meta`` as its metadata_props; ``input_size`` is the model file's (H, W)."""
    example = torch.zeros(2, 3, *input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations in its dependencies)
        program = torch.onnx.export(
            net, (example,), None, dynamo=True, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    program.model.metadata_props.update(meta)
    program.save(str(path), external_data=False)
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


@contextlib.contextmanager
def _torchscript_deprecation_silenced():
    """Inside the block, torch's FutureWarnings "`torch.jit.script` / `torch.jit.save` /
    `torch.jit.load` is deprecated" are not shown (other warnings are).

    Why: TorchScript is shipped on purpose (the only export libtorch in C++ loads without
    compiling anything; see the module docstring), next to the torch.export file torch
    recommends; the warning would repeat in every export run and test without telling anyone
    anything new. The one place the repository silences it: every TorchScript call goes
    through :func:`script`, :func:`export_torchscript` or :func:`load_torchscript`.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated",
                                category=FutureWarning)
        yield


def script(net: torch.nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script(net)`` without its deprecation warning (same module, same input and
    output shapes and dtypes as ``net``)."""
    with _torchscript_deprecation_silenced():
        return torch.jit.script(net)


def export_torchscript(net: torch.nn.Module, path: Path | str, meta: dict[str, str]) -> None:
    """Write ``torch.jit.script(net)`` to ``path`` with ``meta`` as extra file ``meta.json``."""
    with _torchscript_deprecation_silenced():
        torch.jit.save(script(net), str(path), _extra_files={"meta.json": json.dumps(meta)})


def load_torchscript(path: Path | str) -> torch.jit.ScriptModule:
    """``torch.jit.load`` on the CPU, in eval mode, without its deprecation warning."""
    with _torchscript_deprecation_silenced():
        return torch.jit.load(str(path), map_location="cpu").eval()


def export_program(net: torch.nn.Module, path: Path | str, meta: dict[str, str],
                   input_size: tuple[int, int]) -> None:
    """Write ``torch.export.export(net)`` to ``path`` (a ``.pt2`` file) with ``meta`` as extra
    file ``meta.json``; ``input_size`` is the model file's (H, W).

    The program takes one (N, 3, H, W) float32 normalized tensor, any N >= 0 (the batch
    dimension is a ``torch.export.Dim``), and returns (N, 10) float32 logits. ``net`` must be
    in eval mode: the program keeps the batch norms' running statistics, not batch statistics.
    """
    # The trained weights are channels_last (recipe.build_model); torch.export.save stores such
    # strided weights only with a warning ("No complete tensor found"), a contiguous copy plainly.
    net = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    example = torch.zeros(2, 3, *input_size)  # batch 2: a batch of 1 would be specialized
    program = torch.export.export(net, (example,),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(program, str(path), extra_files={"meta.json": json.dumps(meta)})


def load_program(path: Path | str) -> torch.nn.Module:
    """The callable module of the ExportedProgram at ``path`` (``torch.export.load(path)
    .module()``): (N, 3, H, W) float32 normalized in, (N, 10) float32 logits out, on the CPU."""
    return torch.export.load(str(path)).module()


def onnx_session(path: Path | str):
    """An onnxruntime ``InferenceSession`` on the CPU execution provider with as many intra-op
    threads as torch uses (``torch.get_num_threads()``), so the two compare on equal terms."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            batch: int = SPEED_BATCH) -> torch.Tensor:
    """``fn`` over ``x`` (N, ...) in batches of ``batch``, concatenated; on the CPU."""
    return torch.cat([fn(b) for b in x.split(batch)])


def agreement(reference: torch.Tensor, other: torch.Tensor) -> dict:
    """How far ``other`` (N, C) logits are from ``reference`` (N, C): ``max_abs_logit_diff``
    (float), ``top1_agreement`` (fraction of images with the same argmax), ``top1_disagreements``
    (count)."""
    same = (reference.argmax(1) == other.argmax(1))
    return {"max_abs_logit_diff": float((reference - other).abs().max()),
            "top1_agreement": float(same.float().mean()),
            "top1_disagreements": int((~same).sum())}


def images_per_second(fn: Callable[[], object], batch: int, min_seconds: float) -> float:
    """Images/s of ``fn`` (one forward pass over ``batch`` images), timed over as many calls as
    fill ``min_seconds`` after one untimed warm-up call."""
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or calls == 0:
        fn()
        calls += 1
    return calls * batch / elapsed


def speed(net: torch.nn.Module, session, x: torch.Tensor, rounds: int = 3,
          min_seconds: float = 1.0) -> dict:
    """onnxruntime (CPU) against torch eager (CPU, channels_last, inference mode) on one batch
    ``x`` (B, 3, H, W): the best images/s of ``rounds`` interleaved rounds each (the least
    disturbed by other work on the machine), the CPU's name and the threads each used."""
    feed = {INPUT_NAME: x.numpy()}
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def eager():
        with torch.inference_mode():
            net(x_cl)

    ort, torch_eager = [], []
    for _ in range(rounds):
        ort.append(images_per_second(lambda: session.run(None, feed), len(x), min_seconds))
        torch_eager.append(images_per_second(eager, len(x), min_seconds))
    return {"batch_size": len(x), "rounds": rounds,
            "onnxruntime_cpu_images_per_s": max(ort),
            "torch_eager_cpu_images_per_s": max(torch_eager),
            "onnxruntime_over_eager": max(ort) / max(torch_eager),
            "cpu": provenance.device_name(torch.device("cpu")),
            "onnxruntime_threads": session.get_session_options().intra_op_num_threads,
            "torch_threads": torch.get_num_threads()}


def export_and_check(net: torch.nn.Module, saved: dict, images: np.ndarray,
                     onnx_path: Path | str = paths.ONNX_FILE,
                     torchscript_path: Path | str = paths.TORCHSCRIPT_FILE,
                     program_path: Path | str = paths.EXPORTED_PROGRAM_FILE,
                     speed_batch: int = SPEED_BATCH, min_seconds: float = 1.0) -> dict:
    """Export ``net`` to ONNX, TorchScript and an ExportedProgram, check each, and only then
    write them.

    Args:
        net: the trained network in eval mode on the CPU (:func:`resnet9.model_file.load_trained`).
        saved: its model file's dict (normalization, classes, provenance).
        images: (N, 32, 32, 3) uint8 RGB test images to check on (N >= 1).
        speed_batch: batch size of the speed measurement (the images are repeated to fill it).
        min_seconds: timed seconds per engine per round of the speed measurement.

    Returns:
        The metrics: ``images``, ``opset``, ``onnx``, ``torchscript`` and
        ``exported_program`` (each :func:`agreement` plus ``file_bytes``) and ``speed``
        (:func:`speed`).

    Raises:
        ExportError: an export's top-1 class differs from torch eager's on any image; the
            message names the file, the count and the largest logit difference. Nothing is
            written then.
    """
    net = net.cpu().eval()
    norm = saved["normalization"]
    x = preprocess.normalize(torch.from_numpy(images), norm["mean"], norm["std"])
    x = x.contiguous()
    with torch.inference_mode():
        reference = batched(lambda b: net(b.contiguous(memory_format=torch.channels_last)), x)
    meta = metadata(saved)
    with contextlib.ExitStack() as stack:
        onnx_tmp = stack.enter_context(atomic_io.atomic_path(onnx_path, ".onnx"))
        ts_tmp = stack.enter_context(atomic_io.atomic_path(torchscript_path, ".ts"))
        pt2_tmp = stack.enter_context(atomic_io.atomic_path(program_path, ".pt2"))
        export_onnx(net, onnx_tmp, meta, tuple(saved["input_size"]))
        export_torchscript(net, ts_tmp, meta)
        export_program(net, pt2_tmp, meta, tuple(saved["input_size"]))

        session = onnx_session(onnx_tmp)
        scripted = load_torchscript(ts_tmp)
        program = load_program(pt2_tmp)  # the file as written, not the in-memory program
        ort_logits = batched(lambda b: torch.from_numpy(
            session.run(None, {INPUT_NAME: b.numpy()})[0]), x)
        with torch.inference_mode():
            ts_logits = batched(scripted, x)
            pt2_logits = batched(program, x)
        metrics = {"images": len(x), "opset": OPSET,
                   "onnx": {**agreement(reference, ort_logits),
                            "file_bytes": onnx_tmp.stat().st_size},
                   "torchscript": {**agreement(reference, ts_logits),
                                   "file_bytes": ts_tmp.stat().st_size},
                   "exported_program": {**agreement(reference, pt2_logits),
                                        "file_bytes": pt2_tmp.stat().st_size}}
        for name, path in (("onnx", onnx_path), ("torchscript", torchscript_path),
                           ("exported_program", program_path)):
            m = metrics[name]
            if m["top1_disagreements"]:
                raise ExportError(
                    f"{path}: top-1 class differs from torch eager on {m['top1_disagreements']} "
                    f"of {len(x):,} test images (max |logit diff| {m['max_abs_logit_diff']:.3g}); "
                    "expected 100% agreement; nothing was written")
        reps = -(-speed_batch // len(x))
        metrics["speed"] = speed(net, session, x.repeat(reps, 1, 1, 1)[:speed_batch],
                                 min_seconds=min_seconds)
    return metrics
