"""Stage export: the model file as ONNX, TorchScript and a torch.export ExportedProgram, each
checked on test images against torch eager (logit differences, top-1 agreement, file sizes,
images/s). Outputs: dvc.yaml, resnet9/paths.py."""

import torch

from resnet9 import atomic_io, data, export, model_file, params
from resnet9.paths import (EXPORT_METRICS, EXPORTED_PROGRAM_FILE, MODEL_FILE, ONNX_FILE,
                           TORCHSCRIPT_FILE)
from stages import runner


def main() -> None:
    clock = runner.StageClock()
    clock.lap("imports")
    params.validate()  # export reads no params, but a bad value anywhere stops the run here
    net, saved = model_file.load_trained(MODEL_FILE, torch.device("cpu"))
    _, test = data.load_dataset()
    clock.lap("data")
    metrics = export.export_and_check(net, saved, test.x[: export.CHECK_IMAGES])
    clock.lap("export and checks")
    metrics["model_pt_bytes"] = MODEL_FILE.stat().st_size
    atomic_io.write_json(EXPORT_METRICS, metrics)
    o, t, s = metrics["onnx"], metrics["torchscript"], metrics["speed"]
    e = metrics["exported_program"]
    print(f"export: on {metrics['images']:,} test images, top-1 agreement with torch eager: "
          f"ONNX {o['top1_agreement']:.2%} (max |logit diff| {o['max_abs_logit_diff']:.2g}), "
          f"TorchScript {t['top1_agreement']:.2%} ({t['max_abs_logit_diff']:.2g}), "
          f"ExportedProgram {e['top1_agreement']:.2%} ({e['max_abs_logit_diff']:.2g}); "
          f"batch {s['batch_size']}: onnxruntime {s['onnxruntime_cpu_images_per_s']:,.0f} "
          f"images/s, torch eager {s['torch_eager_cpu_images_per_s']:,.0f} images/s; wrote "
          f"{ONNX_FILE}, {TORCHSCRIPT_FILE}, {EXPORTED_PROGRAM_FILE}, {EXPORT_METRICS}")
    clock.lap("outputs")
    print(clock.line("export"))


if __name__ == "__main__":
    runner.run_stage("export", main)
