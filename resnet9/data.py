"""CIFAR-10 sources, integrity checks, the canonical dataset and stratified subsets.

Sources (``data.source``):

- the official archive URL, fetched with torchvision's ``download_and_extract_archive`` (md5
  checked, then every batch file's md5 checked by ``torchvision.datasets.CIFAR10``);
- a local path to that archive (``cifar-10-python.tar.gz``), checked the same way;
- a local ``.npz`` with ``x_train, y_train, x_test, y_test`` in Keras' layout (NHWC uint8).

Whatever the source, the arrays pass :func:`check_cifar10` and are written as one canonical
dataset (:data:`resnet9.paths.DATASET_DIR`: ``arrays.npz`` + ``meta.json``) that every later
stage reads.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnet9 import PipelineError
from resnet9.cifar10 import IMAGE_SIZE, NUM_CLASSES, SPLIT_COUNTS
from resnet9.paths import ARRAYS_FILE, DATASET_DIR

KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataError(PipelineError):
    """A data source is missing, unreachable, corrupt, or not CIFAR-10."""


@dataclass(frozen=True)
class Split:
    """Images ``x`` (N, 32, 32, 3) uint8 RGB and labels ``y`` (N,) int64 in 0..9."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _from_batches(root: Path, origin: str) -> dict[str, np.ndarray]:
    """Read an extracted official archive with torchvision (checks each batch file's md5)."""
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(root, train=True, download=False)
        test = CIFAR10(root, train=False, download=False)
    except Exception as err:  # torchvision raises RuntimeError, pickle/EOF errors on bad files
        raise DataError(f"{origin}: the archive's batch files are missing or corrupt ({err})")
    return {"x_train": train.data, "y_train": np.asarray(train.targets),
            "x_test": test.data, "y_test": np.asarray(test.targets)}


def _from_archive(path: Path) -> dict[str, np.ndarray]:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_md5, extract_archive

    if not check_md5(str(path), CIFAR10.tgz_md5):
        raise DataError(
            f"{path}: md5 mismatch; expected {CIFAR10.tgz_md5} (the official "
            "cifar-10-python.tar.gz). The file is truncated, corrupt or another archive"
        )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            extract_archive(str(path), tmp)
        except Exception as err:
            raise DataError(f"{path}: cannot extract ({err})") from None
        return _from_batches(Path(tmp), str(path))


def _from_url(url: str) -> dict[str, np.ndarray]:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    with tempfile.TemporaryDirectory() as tmp:
        try:
            download_and_extract_archive(url, tmp, filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
        except Exception as err:
            raise DataError(
                f"data.source: cannot download {url} ({type(err).__name__}: {err}). Offline? Set "
                "data.source to a local cifar-10-python.tar.gz or a Keras-layout .npz; "
                "`make quick SOURCE=../shared/data/cifar10.npz` runs the whole pipeline, small, "
                "on one"
            ) from None
        return _from_batches(Path(tmp), url)


def _from_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: keys {missing} missing; expected {list(KEYS)}, found {npz.files}"
                )
            return {k: npz[k] for k in KEYS}
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz, truncated or corrupt ({err})") from None


def load_source(source: str) -> dict[str, np.ndarray]:
    """Load the four CIFAR-10 arrays from ``source`` (URL, .tar.gz or .npz); not yet checked.

    Raises:
        DataError: missing file, unknown kind, failed download, md5 mismatch, corrupt file.
    """
    if _is_url(source):
        return _from_url(source)
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(
            f"data.source: {source!r} is not a file. Set it to the official archive URL, a local "
            "cifar-10-python.tar.gz, or a Keras-layout .npz such as ../shared/data/cifar10.npz"
        )
    if path.name.endswith((".tar.gz", ".tgz")):
        return _from_archive(path)
    if path.suffix == ".npz":
        return _from_npz(path)
    raise DataError(f"data.source: {source!r} is not a URL, .tar.gz/.tgz or .npz")


def check_cifar10(arrays: dict[str, np.ndarray], origin: str, full: bool = True) -> None:
    """Check that ``arrays`` hold CIFAR-10: shapes, dtypes, labels, counts, classes.

    With ``full`` the counts must be the official 50,000 / 10,000 with 5,000 / 1,000 per class.

    Raises:
        DataError: naming ``origin``, the array and what was expected.
    """
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 4 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise DataError(f"{origin}: x_{split} has shape {x.shape}; expected (N, 32, 32, 3)")
        if x.dtype != np.uint8:
            raise DataError(f"{origin}: x_{split} has dtype {x.dtype}; expected uint8")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(
                f"{origin}: y_{split} has shape {y.shape}, dtype {y.dtype}; expected (N,) integers"
            )
        if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise DataError(
                f"{origin}: y_{split} has labels in [{y.min()}, {y.max()}]; expected 0..9"
            )
        if len(x) != len(y):
            raise DataError(f"{origin}: x_{split} has {len(x)} images but y_{split} {len(y)} labels")
        if full:
            n = SPLIT_COUNTS[split]
            if len(y) != n:
                raise DataError(f"{origin}: {split} has {len(y)} images; expected {n:,}")
            per_class = np.bincount(y, minlength=NUM_CLASSES)
            if (per_class != n // NUM_CLASSES).any():
                raise DataError(
                    f"{origin}: {split} per-class counts {per_class.tolist()}; "
                    f"expected {n // NUM_CLASSES:,} each"
                )


def stratified_subset(y: np.ndarray, n: int, seed: int, key: str = "subset") -> np.ndarray:
    """Indices (sorted, int64) of ``n`` samples with the class proportions of ``y``.

    Each class gets ``n * share`` samples (largest remainders round up), drawn without
    replacement with ``numpy.random.default_rng(seed)``.

    Raises:
        DataError: ``n`` exceeds ``len(y)`` (``key`` names the param).
    """
    if n > len(y):
        raise DataError(f"{key}: {n} is more than the {len(y)} images available")
    rng = np.random.default_rng(seed)
    counts = np.bincount(y, minlength=NUM_CLASSES)
    exact = counts * n / len(y)
    take = np.floor(exact).astype(int)
    for c in np.argsort(-(exact - take), kind="stable")[: n - take.sum()]:
        take[c] += 1
    picks = [rng.choice(np.flatnonzero(y == c), size=k, replace=False)
             for c, k in enumerate(take) if k]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def sha256_of(*arrays: np.ndarray) -> str:
    """SHA-256 over the raw bytes of ``arrays``, in order."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def load_dataset(directory: Path | str = DATASET_DIR) -> tuple[Split, Split]:
    """Read the canonical dataset the download stage wrote to ``directory``: ``(train, test)``.

    Raises:
        DataError: the directory or its arrays file is missing (run ``dvc repro download``).
    """
    path = Path(directory) / ARRAYS_FILE.name
    if not path.is_file():
        raise DataError(f"{path}: not found; run `dvc repro download` first")
    with np.load(path) as npz:
        return (Split(npz["x_train"], npz["y_train"].astype(np.int64)),
                Split(npz["x_test"], npz["y_test"].astype(np.int64)))
