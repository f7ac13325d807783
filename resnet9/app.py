"""The course's demo: a Gradio app that classifies an image with a trained model file and shows
where the network looked (``python -m resnet9.app``).

Usage::

    python -m resnet9.app [--model data/model.pt] [--host 127.0.0.1] [--port 7860]
                          [--test-data NPZ] [--gallery-images 1000] [--device auto]
                          [--examples app/examples]

It needs only a model file (``data/model.pt``): train one (``dvc repro train``; ``make quick``
for a small one on a CPU), pull it (``dvc pull data/model.pt``), or get a registered version
from the model registry (README, "Use the model"; docs/use-the-model.md)::

    dvc artifacts get <repo> resnet9-cifar10 -o data/model.pt

Then open the URL it prints (``make demo`` does all this for ``data/model.pt``). The page shows:

- the top-k classes of an uploaded image, or of one of 10 CIFAR-10 test images
  (``app/examples``, made by ``scripts/app_examples.py``), with their softmax probabilities;
- Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization", ICCV) for the top class at a chosen block, with captum's
  LayerGradCam (:func:`resnet9.predict.gradcam_maps`), drawn over the 32x32 input;
- misclassified test images, "predicted / actual", loaded when their section is opened: the
  evaluate stage's ``plots/confusion.csv`` with ``data/cifar10/arrays.npz`` when dvc.lock says
  evaluate ran on this very model file, otherwise computed once, the first time the section
  is opened, on the first ``--gallery-images`` test images of ``--test-data``,
  ``data/cifar10/arrays.npz`` or ``../shared/data/cifar10.npz``;
- the model file's provenance, as ``python -m resnet9.predict --info`` prints it.

Preprocessing is predict's own (:func:`resnet9.predict.prepare`, then
:func:`resnet9.predict.to_tensor` with the model file's mean and std): the app and the command
line give the same probabilities for the same file. Offline by design: Gradio's analytics and
version check are off, there is no share link, and the theme's fonts come from the app itself.

Exit status: 0 once the server is stopped (Ctrl+C); 1 it cannot serve (gradio missing, port
taken); 2 bad arguments; 3 the model file is missing, unreadable or foreign (one line on stderr
naming it and the commands that make or fetch one).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from resnet9 import PipelineError, data, model_file, params, paths, precision, predict, runtime
from resnet9 import preprocess

EXIT_OK, EXIT_CANNOT_SERVE, EXIT_BAD_MODEL = 0, 1, predict.EXIT_BAD_MODEL
GRADCAM_LAYERS = predict.GRADCAM_LAYERS
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "app" / "examples"
SHARED_NPZ = Path("../shared/data/cifar10.npz")  # the offline copy beside the repository
DVC_LOCK = Path("dvc.lock")  # says which model file the evaluate stage's confusion.csv is of
GALLERY_IMAGES = 1000  # test images the gallery classifies when it has to (~10 s on 2 CPU cores)
GALLERY_SHOWN = 48  # misclassified images shown at most
SHOW_PX = 256  # the 32x32 input and its Grad-CAM are shown this large (pixels)
FETCH_HINT = ("`make quick` trains a small one in minutes; `dvc artifacts get <repo> "
              "resnet9-cifar10 -o data/model.pt` fetches a registered one")


class Demo:
    """The loaded model and what the page's handlers compute with it (no Gradio in here, so
    that tests call the handlers directly).

    Raises (constructor):
        model_file.ModelFileError: the model file is missing, unreadable or foreign.
    """

    def __init__(self, model: Path, device: torch.device, test_data: Path | None = None,
                 gallery_images: int = GALLERY_IMAGES):
        self.model, self.device, self.test_data = Path(model), device, test_data
        self.info = model_file.info(self.model)  # validates the file, and the md5 for the gallery
        self.net, saved = model_file.load_trained(self.model, device)
        self.classes = list(saved["classes"])
        self.size, self.norm = saved["input_size"], saved["normalization"]
        self.amp = precision.resolve("auto", device)
        self.gallery_images = gallery_images
        self._gallery: tuple[list, str] | None = None

    def classify(self, file: str | None, k: int = 3, cam: bool = False, layer: str = "layer3",
                 opacity: float = 0.5) -> tuple[Image.Image | None, dict, Image.Image | None, str]:
        """One image file's ``(input, top-k, overlay, message)``: the network's 32x32 input
        enlarged to :data:`SHOW_PX`; ``{class: probability}`` for the ``k`` likeliest classes;
        the Grad-CAM overlay at ``layer`` with heatmap ``opacity`` in [0, 1] (None unless
        ``cam``); and "" or, for a file that is not a usable image, one line naming it and why
        (:class:`resnet9.predict.ImageFileError`) with the other outputs empty."""
        if not file:
            return None, {}, None, ""
        try:
            image = predict.prepare(file, self.size)
        except predict.ImageFileError as err:
            # Gradio copies uploads to a temporary folder: name the file as the user knows it.
            return None, {}, None, f"**Cannot use this file:** {err}".replace(
                str(file), Path(file).name)
        x = predict.to_tensor([image], self.norm["mean"], self.norm["std"])
        probs = predict.probabilities(self.net, x, self.device, self.amp)
        top = predict.top_k(probs, self.classes, int(k))[0]
        overlay = None
        if cam:
            heat = predict.gradcam_maps(self.net, layer, x, [self.classes.index(top[0][0])],
                                        self.device, self.amp)[0]
            overlay = blend(image, heat, opacity)
        return image.resize((SHOW_PX, SHOW_PX), Image.Resampling.NEAREST), dict(top), overlay, ""

    def misclassified(self) -> tuple[list[tuple[Image.Image, str]], str]:
        """Misclassified test images as ``[(image, "predicted / actual"), ...]`` (at most
        :data:`GALLERY_SHOWN`, each enlarged to 96x96 pixels) and one line of markdown saying
        where they come from, or why there are none (no test set; a corrupt arrays file or
        confusion.csv). Computed once, then cached."""
        if self._gallery is None:
            try:
                x, actual, predicted, source = self._test_predictions()
            except data.DataError as err:
                return [], f"**No test images:** {err}"
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:  # corrupt files
                return [], f"**Cannot read the test images:** {type(err).__name__}: {err}"
            wrong = np.flatnonzero(actual != predicted)
            shown = wrong[:GALLERY_SHOWN]
            items = [(Image.fromarray(x[i]).resize((96, 96), Image.Resampling.NEAREST),
                      f"{self.classes[predicted[i]]} / {self.classes[actual[i]]}") for i in shown]
            self._gallery = items, (f"{len(wrong):,} of {len(actual):,} test images misclassified "
                                    f"(showing {len(shown)}; captions: predicted / actual). "
                                    f"Source: {source}.")
        return self._gallery

    def _test_predictions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """Test images (N, 32, 32, 3) uint8, actual and predicted labels (N,) int64, and a
        sentence naming their source. Raises data.DataError: no test set, or a bad one."""
        if self.test_data is None and paths.ARRAYS_FILE.is_file():
            test = data.load_dataset()[1]
            if paths.CONFUSION_CSV.is_file() and _evaluated_md5() == self.info["file"]["md5"]:
                import pandas as pd

                frame = pd.read_csv(paths.CONFUSION_CSV)
                if len(frame) == len(test):  # the test subset evaluate saw, in the same order
                    index = {c: i for i, c in enumerate(self.classes)}
                    return (test.x, test.y, frame["predicted"].map(index).to_numpy(),
                            f"the evaluate stage's `{paths.CONFUSION_CSV}` for this model file "
                            f"(md5 in `{DVC_LOCK}`) and `{paths.ARRAYS_FILE}`")
            x, y, origin = test.x, test.y, str(paths.ARRAYS_FILE)
        else:
            origin = str(self.test_data or SHARED_NPZ)
            if self.test_data is None and not SHARED_NPZ.is_file():
                raise data.DataError(f"neither {paths.ARRAYS_FILE} (`dvc repro download`) nor "
                                     f"{SHARED_NPZ} exists; pass --test-data NPZ")
            arrays = data.load_source(origin)
            data.check_cifar10(arrays, origin, full=False)
            x, y = arrays["x_test"], arrays["y_test"].astype(np.int64)
        x, y = x[:self.gallery_images], y[:self.gallery_images]
        inputs = preprocess.normalize(torch.from_numpy(x), self.norm["mean"], self.norm["std"])
        predicted = predict.probabilities(self.net, inputs, self.device, self.amp).argmax(1)
        return (x, y, predicted.numpy(), f"this model's predictions, computed now, for the first "
                f"{len(y):,} test images of `{origin}`")


def _evaluated_md5() -> str | None:
    """md5 of the model file the evaluate stage last read, from dvc.lock (None if unknown)."""
    import yaml

    try:
        deps = yaml.safe_load(DVC_LOCK.read_text())["stages"]["evaluate"]["deps"]
        return next(d["md5"] for d in deps if d["path"] == paths.MODEL_FILE.as_posix())
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration):
        return None


def blend(image: Image.Image, heat: np.ndarray, opacity: float, size: int = SHOW_PX
          ) -> Image.Image:
    """``image`` (RGB, H x W) enlarged to ``size`` pixels (nearest: the pixels the network saw)
    under the Grad-CAM map ``heat`` (H, W) float in [0, 1] coloured with matplotlib's "jet" (as
    in the analyze stage's figure) and smoothly enlarged; ``opacity`` in [0, 1] is the map's."""
    from matplotlib import colormaps

    rgb = (colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255).astype(np.uint8)
    heatmap = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
    base = image.convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    return Image.blend(base, heatmap, float(opacity))


def build(demo: Demo, examples: Path = EXAMPLES_DIR):
    """The page (a ``gr.Blocks``) wired to ``demo``'s handlers; ``examples``: ``*.png`` shown
    as example inputs."""
    import gradio as gr

    width = demo.info["width_multiplier"]
    with gr.Blocks(title="ResNet-9 on CIFAR-10", analytics_enabled=False) as page:
        gr.Markdown(f"# ResNet-9 on CIFAR-10\nModel `{demo.model}` (width {width}, md5 "
                    f"`{demo.info['file']['md5'][:12]}`). It knows 10 classes: "
                    f"{', '.join(demo.classes)}. Any image is centre-cropped to a square and "
                    "resized to 32x32 pixels, as `python -m resnet9.predict` does.")
        with gr.Row():
            with gr.Column():
                # gr.File, not gr.Image: any file reaches our handler, so a non-image gets
                # predict's own message instead of being refused or mangled by the browser.
                upload = gr.File(label="Image (PNG, JPEG, ...)", type="filepath",
                                 elem_id="upload")
                pngs = sorted(examples.glob("*.png"))
                if pngs:  # absent where only the package was installed
                    gr.Examples([[str(p)] for p in pngs], [upload], examples_per_page=10,
                                label="CIFAR-10 test images (one per class)")
                k = gr.Slider(1, len(demo.classes), value=3, step=1, label="Top-k classes",
                              elem_id="top-k")
                cam = gr.Checkbox(label="Grad-CAM: where the top class was found",
                                  elem_id="gradcam")
                layer = gr.Radio(list(GRADCAM_LAYERS), value="layer3", label="Grad-CAM layer",
                                 elem_id="gradcam-layer")
                opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Heatmap opacity",
                                    elem_id="opacity")
            with gr.Column():
                message = gr.Markdown(elem_id="message")
                label = gr.Label(label="Top classes (softmax probability)", elem_id="label")
                with gr.Row():
                    seen = gr.Image(label="The network's input (32x32, enlarged)",
                                    interactive=False, elem_id="network-input")
                    overlay = gr.Image(label="Grad-CAM overlay", interactive=False,
                                       elem_id="overlay")
        gr.on([upload.change, k.release, cam.change, layer.change, opacity.release],
              demo.classify, [upload, k, cam, layer, opacity], [seen, label, overlay, message])
        with gr.Accordion("Misclassified test images", open=False,
                          elem_id="misclassified") as wrong:
            source = gr.Markdown(elem_id="gallery-source")
            gallery = gr.Gallery(label="predicted / actual", columns=8, height="auto",
                                 elem_id="gallery")
        # Opening the section fills it: no second click. Not on page load, which would make
        # every visitor wait for up to --gallery-images predictions. No reload button either:
        # Demo.misclassified caches a gallery (reopening shows it at once) and retries after
        # an error, so reopening the section is the reload.
        wrong.expand(demo.misclassified, None, [gallery, source])
        with gr.Accordion("Model provenance (python -m resnet9.predict --info)", open=False,
                          elem_id="provenance-section"):
            gr.JSON(demo.info, elem_id="provenance")
    return page


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m resnet9.app", description=(
        "A Gradio demo of a trained ResNet-9 model file: top-k classes, Grad-CAM, misclassified "
        "test images, provenance."), epilog="Exit status: 0 stopped, 1 cannot serve, 2 bad "
        "arguments, 3 unusable model file.")
    # Gradio's own variables first: Hugging Face Spaces set them (0.0.0.0:7860).
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                   help="TCP port (default 7860)")
    p.add_argument("--model", type=Path, default=paths.MODEL_FILE,
                   help=f"model file written by the train stage (default {paths.MODEL_FILE})")
    p.add_argument("--test-data", type=Path, metavar="NPZ",
                   help="test images for the misclassified gallery: a Keras-layout .npz "
                        f"(default {paths.ARRAYS_FILE}, else {SHARED_NPZ})")
    p.add_argument("--gallery-images", type=int, default=GALLERY_IMAGES, metavar="N",
                   help="classify at most the first N test images for the gallery when "
                        f"evaluate's {paths.CONFUSION_CSV} cannot be used (default "
                        f"{GALLERY_IMAGES})")
    p.add_argument("--examples", type=Path, default=EXAMPLES_DIR,
                   help="folder of example images (default app/examples)")
    p.add_argument("--device", choices=params.DEVICES, default="auto",
                   help="auto: CUDA, else MPS, else CPU (default)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the app until interrupted; return the exit status (see the module docstring)."""
    ap = parser()
    args = ap.parse_args(argv)
    if args.gallery_images < 1:
        ap.error(f"--gallery-images {args.gallery_images}: expected a positive integer")
    if args.test_data and not args.test_data.is_file():
        ap.error(f"--test-data {args.test_data}: not found; expected a Keras-layout .npz")
    try:
        device = runtime.select_device(args.device)
    except PipelineError:
        ap.error(f"--device {args.device}: not available on this machine")
    try:  # before importing gradio: a missing model fails in a second, not after ten
        demo = Demo(args.model, device, args.test_data, args.gallery_images)
    except model_file.ModelFileError as err:
        print(f"app: error: {err}; {FETCH_HINT}", file=sys.stderr)
        return EXIT_BAD_MODEL
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry, no version check
    if importlib.util.find_spec("gradio") is None:
        print("app: error: gradio is not installed; `make install` installs the version pinned "
              "in requirements.txt (a Space: app/requirements.txt)", file=sys.stderr)
        return EXIT_CANNOT_SERVE
    page = build(demo, args.examples)
    try:
        page.launch(server_name=args.host, server_port=args.port, share=False, quiet=True,
                    prevent_thread_lock=True, allowed_paths=[str(args.examples.resolve())])
    except OSError as err:
        print(f"app: error: cannot serve on {args.host}:{args.port} ({err})", file=sys.stderr)
        return EXIT_CANNOT_SERVE
    print(f"app: serving {args.model} on {page.local_url} (Ctrl+C to stop)", flush=True)
    page.block_thread()  # until Ctrl+C; Gradio then closes the server
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
