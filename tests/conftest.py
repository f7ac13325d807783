"""Shared fixtures: the repository root, the real CIFAR-10 copy in ../shared, small data."""

from __future__ import annotations

import contextlib
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


def colour_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic images a tiny network learns within seconds: (n, 32, 32, 3) uint8 whose class
    (labels (n,) int64, 0..9 in turn) sets the mean colour, plus noise and a random bright square."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(30, 226, (10, 3))
    y = np.arange(n) % 10
    x = palette[y][:, None, None, :] + rng.normal(0, 25, (n, 32, 32, 3))
    for i, (r, c) in enumerate(rng.integers(0, 24, (n, 2))):
        x[i, r:r + 8, c:c + 8] += 60
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch on ``n`` intra-op threads inside the block, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """torch on one thread for the test: on a shared 2-core machine two threads that compete
    with other processes run many times slower than one."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A width-0.125 ResNet-9 trained for a few seconds on :func:`colour_arrays`, saved as the
    train stage saves it (with provenance) to a temporary ``model.pt``; its predictions vary
    across images."""
    import torch

    from resnet9 import provenance, recipe, runtime
    from resnet9.params import ModelParams

    cpu = torch.device("cpu")
    runtime.seed_everything(0)
    model_p = ModelParams(width_multiplier=0.125)
    net = recipe.build_model(model_p, cpu)
    x, y = colour_arrays(320)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).sub(0.47).div(0.25)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    net.train()
    with torch_threads(1):
        for _ in range(3):
            for xb, yb in zip(x.split(32), torch.from_numpy(y).split(32)):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xb), yb).backward()
                opt.step()
    path = tmp_path_factory.mktemp("model") / "model.pt"
    prov = provenance.collect(params={"model": {"width_multiplier": 0.125}},
                              dataset_sha256={"train": "synthetic"}, train_seconds=1.0,
                              device=cpu, cwd=path.parent)
    recipe.save_trained(path, net.eval(), model_p, provenance=prov)
    return path
