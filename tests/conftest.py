"""Shared fixtures: the repository root, the real CIFAR-10 copy in ../shared, small data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_NPZ = ROOT.parent / "shared" / "data" / "cifar10.npz"


@pytest.fixture(scope="session")
def cifar_npz() -> Path:
    """The real CIFAR-10 (../shared/data/cifar10.npz). Skipped where absent, failed in CI."""
    if not SHARED_NPZ.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_NPZ} is missing; CI must run with ../shared beside the repo")
        pytest.skip(f"{SHARED_NPZ} is absent (real-data tests need ../shared)")
    return SHARED_NPZ


def tiny_arrays(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic CIFAR-shaped arrays: uint8 NHWC images, balanced uint8 labels 0..9."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }
