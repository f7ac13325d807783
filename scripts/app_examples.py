"""Regenerate the demo app's example images: ``python scripts/app_examples.py``.

Writes ``app/examples/<class>.png``, one per CIFAR-10 class: the first image of that class in
the TEST set (never seen in training), as it is: 32x32 RGB, about 2-3 KB. Not upscaled, so that
predict's ``prepare`` passes it unchanged and the app predicts exactly what the evaluate stage
predicts for that test image (an upscaled copy comes back through bicubic resizing a few
levels off); the app shows it enlarged.

Source: a Keras-layout ``.npz`` with ``x_test`` (N, 32, 32, 3) uint8 and ``y_test`` (N,)
(default ``../shared/data/cifar10.npz``, see ../shared/data/README.md), or anything else
``data.source`` accepts (:func:`resnet9.data.load_source`). Exit status 1 with one line if it
is missing, corrupt or not CIFAR-10.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from resnet9 import data
from resnet9.cifar10 import CLASSES

ROOT = Path(__file__).resolve().parents[1]

def write_examples(x_test: np.ndarray, y_test: np.ndarray, out: Path) -> list[Path]:
    """Save the first test image of each class (32x32 RGB PNG) as ``out/<class>.png``.

    Args:
        x_test: (N, 32, 32, 3) uint8 RGB. y_test: (N,) integer labels 0..9.

    Raises:
        data.DataError: a class has no image in ``y_test``.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for label, name in enumerate(CLASSES):
        hits = np.flatnonzero(y_test == label)
        if not len(hits):
            raise data.DataError(f"y_test: no image of class {label} ({name}); expected all 10")
        path = out / f"{name}.png"
        Image.fromarray(x_test[hits[0]]).save(path, optimize=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "cifar10.npz"),
                   help="CIFAR-10 .npz, .tar.gz or URL (default ../shared/data/cifar10.npz)")
    p.add_argument("--out", type=Path, default=ROOT / "app" / "examples")
    args = p.parse_args(argv)
    try:
        arrays = data.load_source(args.source)
        data.check_cifar10(arrays, args.source, full=False)
        paths = write_examples(arrays["x_test"], arrays["y_test"], args.out)
    except data.DataError as err:
        print(f"app_examples: error: {err}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.1f} KB" for p in paths)
    print(f"app_examples: wrote {len(paths)} images to {args.out}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
