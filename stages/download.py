"""Stage download: CIFAR-10 from ``data.source`` (the archive or a local npz), checked, as the
canonical dataset every later stage reads. Outputs: dvc.yaml, resnet9/paths.py."""

import numpy as np

from resnet9 import atomic_io, cifar10, data, params
from resnet9.paths import ARRAYS_FILE, DATASET_DIR, META_FILE
from stages import runner


def main() -> None:
    clock = runner.StageClock()
    clock.lap("imports")
    p = params.load("data")
    print(f"download: reading {p.source}")
    arrays = data.load_source(p.source)
    clock.lap("reading")
    data.check_cifar10(arrays, p.source, full=True)
    n, size, k = cifar10.SPLIT_COUNTS, cifar10.IMAGE_SIZE, cifar10.NUM_CLASSES
    print(f"download: checks passed ({n['train']:,} / {n['test']:,} images, {size}x{size}x3 "
          f"uint8, {n['train'] // k:,} / {n['test'] // k:,} per class)")
    for split, n in (("train", p.train_subset), ("test", p.test_subset)):
        if n is not None:
            keep = data.stratified_subset(arrays[f"y_{split}"], n, p.seed, f"data.{split}_subset")
            arrays[f"x_{split}"], arrays[f"y_{split}"] = (arrays[f"x_{split}"][keep],
                                                          arrays[f"y_{split}"][keep])
    arrays = {k: np.ascontiguousarray(v, dtype=np.uint8) for k, v in arrays.items()}
    # Nothing here names the source: the same images give the same bytes (and DVC hash) from
    # the official archive or the npz mirror, so switching data.source reruns download alone.
    # dvc.lock records the source.
    meta = {
        "classes": list(cifar10.CLASSES),
        "counts": {s: len(arrays[f"y_{s}"]) for s in ("train", "test")},
        "per_class": {s: np.bincount(arrays[f"y_{s}"], minlength=cifar10.NUM_CLASSES).tolist()
                      for s in ("train", "test")},
        "subset": {"train": p.train_subset, "test": p.test_subset, "seed": p.seed},
        "sha256": {s: data.sha256_of(arrays[f"x_{s}"], arrays[f"y_{s}"])
                   for s in ("train", "test")},
    }

    def write(tmp):
        tmp.mkdir()
        np.savez(tmp / ARRAYS_FILE.name, **arrays)
        atomic_io.write_json(tmp / META_FILE.name, meta)

    atomic_io.write_with(DATASET_DIR, write)
    print(f"download: wrote {DATASET_DIR}/ ({meta['counts']['train']:,} train, "
          f"{meta['counts']['test']:,} test images)")
    clock.lap("checks and writing")
    print(clock.line("download"))


if __name__ == "__main__":
    runner.run_stage("download", main)
