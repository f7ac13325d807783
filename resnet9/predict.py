"""Classify your own images with a trained model file: ``python -m resnet9.predict``.

Usage::

    python -m resnet9.predict IMAGE... [--model data/model.pt] [--top-k 3] [--gradcam DIR]
                              [--gradcam-layer layer3] [--device auto] [--precision auto]
                              [--json]
    python -m resnet9.predict --info [--model data/model.pt] [--json]

Only the model file is needed (no dataset, no ``params.yaml``): it carries the class names, the
normalization mean and std, the width multiplier and the input size
(:func:`resnet9.model_file.save_trained`).

How an image becomes the network's input (:func:`prepare`), with Pillow:

1. open it (PNG, JPEG, WebP, BMP, TIFF, GIF, or any other format Pillow reads; the first frame
   of an animation) and apply its EXIF orientation;
2. convert it to 8-bit RGB (:func:`to_rgb`): 16- and 32-bit pixels are scaled to 0-255 by their
   type's range (not clipped: a 0-65535 gradient stays a gradient), transparent pixels are
   composited onto a white background, every other mode (1, L, P, CMYK, ...) is converted by
   Pillow;
3. the largest centred square is cropped and resized to 32x32 with Pillow's antialiased bicubic
   filter (``ImageOps.fit``): the aspect ratio is kept and the borders of non-square images are
   cut off. A 32x32 RGB image passes unchanged;
4. scaled to [0, 1] and normalized per channel with the model file's mean and std
   (:func:`resnet9.preprocess.normalize`).

Exit status: 0 every image predicted; 1 at least one image could not be read (each gets one
line on stderr naming the file and the reason; the others are still predicted); 2 bad arguments;
3 the model file is missing, unreadable or foreign (one line naming it and what to do).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from resnet9 import PipelineError, model_file, params, paths, precision, preprocess, runtime
from resnet9.model import INPUT_SIZE

EXIT_OK, EXIT_BAD_IMAGE, EXIT_USAGE, EXIT_BAD_MODEL = 0, 1, 2, 3
BATCH = 256  # images per forward pass
GRADCAM_LAYERS = params.GRADCAM_LAYERS


class ImageFileError(PipelineError):
    """An input image is missing, unreadable, or not an image."""


def prepare(path: Path | str, size: Sequence[int] = INPUT_SIZE) -> Image.Image:
    """The image at ``path`` as the network sees it before normalization: an 8-bit RGB PIL image
    of ``size`` = (H, W) pixels (steps 1-3 of the module docstring). The first frame of an
    animated GIF, WebP or PNG; the EXIF orientation applied (a phone photo taken on its side
    comes out upright); then :func:`to_rgb`, then the centred square resized to ``size``.

    Raises:
        ImageFileError: one line naming ``path`` and why it cannot be used (not found, a
            directory, permission denied, not an image, truncated or corrupt, or more pixels
            than Pillow's decompression-bomb guard allows, ``Image.MAX_IMAGE_PIXELS``).
    """
    path = Path(path)
    try:
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that (and raises above): make the
        # warning an error too, so an oversized file gets the one-line error, not a warning and
        # a slow decode. catch_warnings is process-wide, not thread-safe: with concurrent calls
        # (the app) this filter may outlive the block, which only extends the same refusal.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # an animation opens at its first frame
                im.load()
                rgb = to_rgb(ImageOps.exif_transpose(im))
    except FileNotFoundError:
        raise ImageFileError(f"{path}: not found") from None
    except IsADirectoryError:
        raise ImageFileError(f"{path}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageFileError(f"{path}: permission denied") from None
    except Image.UnidentifiedImageError:
        raise ImageFileError(f"{path}: not an image Pillow can read; expected an image "
                             "file (PNG, JPEG, WebP, BMP, TIFF, GIF, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageFileError(f"{path}: more than {Image.MAX_IMAGE_PIXELS:,} pixels (Pillow's "
                             "Image.MAX_IMAGE_PIXELS), refused as a possible decompression "
                             "bomb") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageFileError(f"{path}: truncated or corrupt image ({err})") from None
    height, width = size
    return ImageOps.fit(rgb, (width, height), method=Image.Resampling.BICUBIC)


WHITE = (255, 255, 255, 255)
# Single-channel modes wider than 8 bits, which Pillow's convert clips instead of scaling;
# np.asarray gives (H, W) uint16 (">u2" for I;16B), int32 (I) or float32 (F).
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")
I16_MAX, I32_MAX = 65535, 2**31 - 1


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` (any size, any mode) as an 8-bit RGB image of the same size, the way a user
    expects to see it. Per mode:

    ==============================  ==========================================================
    mode                            conversion
    ==============================  ==========================================================
    I;16, I;16L, I;16B, I;16N       16-bit gray (16-bit grayscale PNG, TIFF): ``round(v / 257)``,
                                    so 0 -> 0 and 65535 -> 255 (Pillow's own convert clips at
                                    255, turning most of the range white)
    I                               32-bit signed gray (16-bit PGM, 32-bit TIFF): negative
                                    values -> 0; if the maximum is <= 255, taken as 8-bit data;
                                    <= 65535 as 16-bit (``round(v / 257)``); above, scaled by
                                    the int32 range (``round(v * 255 / (2**31 - 1))``)
    F                               32-bit float gray: NaN -> 0; values taken as 0-1 if the
                                    maximum is <= 1 (``round(v * 255)``), else as 0-255;
                                    clipped to 0-255
    RGBA, LA, PA, RGBa; any mode    composited onto white (transparent -> white, half
    with a ``transparency`` key     transparent -> halfway to white); the key of an I;16 or I
    (P, L, RGB, I;16)               image marks its pixels white
    1, L, P, RGB, CMYK, YCbCr, ...  Pillow's ``convert("RGB")`` (1 -> 0 or 255; CMYK naively,
                                    without an ICC profile)
    ==============================  ==========================================================

    16-bit RGB and RGBA (PNG, TIFF) need nothing here: Pillow 12 decodes them to RGB/RGBA
    keeping the high byte (``v >> 8``), within 1 of ``round(v / 257)``; likewise 16-bit gray
    with alpha, which Pillow opens as RGBA.

    Raises:
        ValueError: a mode Pillow cannot convert to RGB (such as La).
    """
    if im.mode in WIDE_MODES:
        return _wide_to_8bit(im).convert("RGB")
    if im.mode in ALPHA_MODES or "transparency" in im.info:
        white = Image.new("RGBA", im.size, WHITE)
        return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def _wide_to_8bit(im: Image.Image) -> Image.Image:
    """A 16- or 32-bit single-channel image (mode in :data:`WIDE_MODES`) as mode L, scaled by the
    rule of :func:`to_rgb`; pixels equal to its ``transparency`` key, if any, are white."""
    v = np.asarray(im).astype(np.float64)  # (H, W); float64 holds every int32 exactly
    if im.mode == "F":
        v = np.nan_to_num(v, nan=0.0)
        scale = 255.0 if v.max(initial=0) <= 1 else 1.0
    elif im.mode == "I":  # the type cannot say 8, 16 or 32 bits: the values do
        top = v.max(initial=0)
        scale = 1.0 if top <= 255 else 255 / I16_MAX if top <= I16_MAX else 255 / I32_MAX
    else:  # I;16*: the type's range
        scale = 255 / I16_MAX
    gray = np.clip(np.rint(v * scale), 0, 255).astype(np.uint8)
    key = im.info.get("transparency")
    if isinstance(key, int):  # a 16-bit PNG's tRNS: one gray value is transparent
        gray[np.asarray(im) == key] = 255
    return Image.fromarray(gray)


def to_tensor(images: Sequence[Image.Image], mean: Sequence[float],
              std: Sequence[float]) -> torch.Tensor:
    """RGB PIL images of equal size -> (N, 3, H, W) float32, normalized
    (:func:`resnet9.preprocess.normalize`)."""
    from torchvision.transforms.v2 import functional as F

    return preprocess.normalize(torch.stack([F.pil_to_tensor(im) for im in images]), mean, std)


@torch.no_grad()
def probabilities(net: torch.nn.Module, x: torch.Tensor, device: torch.device,
                  amp: precision.Precision | None = None) -> torch.Tensor:
    """Softmax probabilities (N, C) float32 on the CPU of normalized inputs ``x`` (N, 3, H, W),
    in batches of :data:`BATCH`, computed as the evaluate stage does (eval mode, channels_last,
    the forward pass under ``amp``; fp32 when None)."""
    amp = amp or precision.Precision("fp32", device.type)
    net.eval()
    out = []
    for batch in x.split(BATCH):
        batch = batch.to(device).contiguous(memory_format=torch.channels_last)
        with amp.autocast():
            out.append(net(batch).float().cpu())
    return torch.softmax(torch.cat(out), dim=1)


def top_k(probs: torch.Tensor, classes: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """For each row of ``probs`` (N, C), its ``k`` most likely ``(class name, probability)``,
    most likely first (ties in class order)."""
    values, indices = probs.topk(k, dim=1)
    return [[(classes[i], float(v)) for v, i in zip(vs, idx)]
            for vs, idx in zip(values.tolist(), indices.tolist())]


@dataclass
class Prediction:
    """One image's result: ``top`` = ``[(class, probability), ...]``; ``gradcam`` = overlay path."""

    file: str
    top: list[tuple[str, float]]
    gradcam: str | None = None

    def to_dict(self) -> dict:
        return {"file": self.file, "gradcam": self.gradcam,
                "top_k": [{"class": c, "probability": p} for c, p in self.top]}


def gradcam_maps(net: torch.nn.Module, layer: str, x: torch.Tensor, targets: Sequence[int],
                 device: torch.device, amp: precision.Precision):
    """Grad-CAM heatmaps (N, H, W) float32 in [0, 1] of normalized inputs ``x`` (N, 3, H, W)
    for class indices ``targets`` (N,) at block ``layer`` (one of :data:`GRADCAM_LAYERS`):
    captum's LayerGradCam (:func:`resnet9.gradcam.gradcam`) under ``amp``, channels_last as in
    :func:`probabilities`. Shared by :func:`write_gradcams` and the app (:mod:`resnet9.app`)."""
    from resnet9 import gradcam

    targets = torch.as_tensor(targets, dtype=torch.int64, device=device)
    inputs = x.to(device).contiguous(memory_format=torch.channels_last)
    with amp.autocast():
        return gradcam.gradcam(net, getattr(net, layer), inputs, targets).numpy()


def write_gradcams(net: torch.nn.Module, layer: str, images: Sequence[Image.Image],
                   x: torch.Tensor, predictions: Sequence[Prediction], classes: Sequence[str],
                   directory: Path, device: torch.device, amp: precision.Precision) -> None:
    """Write one Grad-CAM overlay per image (:func:`gradcam_maps` for the predicted class,
    drawn over the 32x32 input as the analyze stage does) to
    ``directory/<file name>.gradcam.png`` (``<file name>.<index>.gradcam.png`` for a repeated
    name), and set each prediction's ``gradcam`` path."""
    import numpy as np

    from resnet9 import figures

    cams = gradcam_maps(net, layer, x, [classes.index(p.top[0][0]) for p in predictions],
                        device, amp)
    used: set[str] = set()
    for i, (image, pred) in enumerate(zip(images, predictions)):
        name = f"{Path(pred.file).name}.gradcam.png"
        if name in used:  # two inputs with the same name from different folders
            name = f"{Path(pred.file).name}.{i}.gradcam.png"
        used.add(name)
        label, p = pred.top[0]
        fig = figures.image_grid(np.asarray(image)[None], [f"{label} {p:.0%}"], 1,
                                 f"Grad-CAM at {layer}", overlays=cams[i:i + 1])
        pred.gradcam = str(figures.save_figure(directory / name, fig))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m resnet9.predict",
        description="Top-k CIFAR-10 classes of PNG/JPEG images with a trained ResNet-9 model "
                    "file; --info prints where the model file came from.",
        epilog="Exit status: 0 all predicted, 1 an image could not be read, 2 bad arguments, "
               "3 unusable model file.")
    p.add_argument("images", nargs="*", type=Path,
                   help="image files (PNG, JPEG, WebP, BMP, TIFF, GIF, ...), any size and mode")
    p.add_argument("--model", type=Path, default=paths.MODEL_FILE,
                   help=f"model file written by the train stage (default {paths.MODEL_FILE})")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--gradcam", type=Path, metavar="DIR",
                   help="write a Grad-CAM overlay per image to DIR/<file name>.gradcam.png")
    p.add_argument("--gradcam-layer", choices=GRADCAM_LAYERS, default="layer3",
                   help="layer Grad-CAM explains (default layer3)")
    p.add_argument("--device", choices=params.DEVICES, default="auto",
                   help="auto: CUDA, else MPS, else CPU (default)")
    p.add_argument("--precision", choices=params.PRECISIONS, default="auto",
                   help="forward pass: auto (default) = bf16 on CUDA capability >= 8.0 and on CPUs "
                        "with native bf16 (AVX512-BF16 or AMX), fp16 on older GPUs, fp32 "
                        "elsewhere, as the evaluate stage chooses")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--info", action="store_true",
                   help="print the model file's provenance and settings instead of predicting")
    return p


def _error(message: str) -> None:
    print(f"predict: error: {message}", file=sys.stderr)


def _print_info(details: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(details, indent=2))
        return
    import yaml

    print(yaml.safe_dump(details, sort_keys=False, default_flow_style=None, width=100), end="")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (see the module docstring)."""
    ap = parser()
    args = ap.parse_args(argv)
    if args.info:
        try:
            _print_info(model_file.info(args.model), args.json)
        except model_file.ModelFileError as err:
            _error(str(err))
            return EXIT_BAD_MODEL
        return EXIT_OK
    if not args.images:
        ap.error("give at least one IMAGE, or --info")
    try:
        device = runtime.select_device(args.device)
    except PipelineError:
        ap.error(f"--device {args.device}: not available on this machine")
    amp = precision.resolve(args.precision, device)
    try:
        net, saved = model_file.load_trained(args.model, device)
    except model_file.ModelFileError as err:
        _error(str(err))
        return EXIT_BAD_MODEL
    classes = list(saved["classes"])
    if not 1 <= args.top_k <= len(classes):
        ap.error(f"--top-k {args.top_k}: expected an integer in [1, {len(classes)}]")

    images, names, errors = [], [], []
    for path in args.images:
        try:
            images.append(prepare(path, saved["input_size"]))
            names.append(str(path))
        except ImageFileError as err:
            errors.append({"file": str(path), "error": str(err)})
            _error(str(err))
    predictions = []
    if images:
        norm = saved["normalization"]
        x = to_tensor(images, norm["mean"], norm["std"])
        tops = top_k(probabilities(net, x, device, amp), classes, args.top_k)
        predictions = [Prediction(n, t) for n, t in zip(names, tops)]
        if args.gradcam:
            write_gradcams(net, args.gradcam_layer, images, x, predictions, classes,
                           args.gradcam, device, amp)

    if args.json:
        print(json.dumps({"model": str(args.model),
                          "predictions": [p.to_dict() for p in predictions],
                          "errors": errors}, indent=2))
    else:
        for p in predictions:
            line = ", ".join(f"{c} {prob:.3f}" for c, prob in p.top)
            print(f"{p.file}: {line}" + (f"  (Grad-CAM: {p.gradcam})" if p.gradcam else ""))
    return EXIT_BAD_IMAGE if errors else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
