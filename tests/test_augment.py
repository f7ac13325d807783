import numpy as np
import pytest
import torch

from resnet9 import augment, cifar10


def _hole_mask(out: torch.Tensor) -> np.ndarray:
    """Pixels equal to the normalized mean-pixel fill in every channel: the CutOut hole."""
    mean, std = np.array(cifar10.MEAN), np.array(cifar10.STD)
    fill = torch.tensor((np.round(255 * mean) / 255 - mean) / std, dtype=torch.float32)
    return ((out - fill[:, None, None]).abs() < 1e-5).all(0).numpy()


@pytest.mark.parametrize("pad_mode", ["reflect", "zero"])
def test_train_transform_output_shape_and_dtype(pad_mode):
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = augment.train_transform(pad_mode, seed=1)(image=img)["image"]
    assert isinstance(out, torch.Tensor)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_cutout_hole_is_one_8x8_square():
    img = np.full((32, 32, 3), 200, dtype=np.uint8)  # constant: pad/crop/flip leave it as is
    t = augment.train_transform("reflect", seed=3)
    for _ in range(50):
        mask = _hole_mask(t(image=img)["image"])
        ys, xs = np.nonzero(mask)
        assert mask.sum() == 64
        assert ys.max() - ys.min() == 7 and xs.max() - xs.min() == 7


def test_crop_and_flip_move_the_image():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    t = augment.train_transform(seed=0)
    outs = torch.stack([t(image=img)["image"] for _ in range(20)])
    assert len({o.numpy().tobytes() for o in outs}) == 20


def test_test_transform_is_normalize_only():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = augment.test_transform()(image=img)["image"]
    mean = torch.tensor(cifar10.MEAN)[:, None, None]
    std = torch.tensor(cifar10.STD)[:, None, None]
    expected = (torch.from_numpy(img).permute(2, 0, 1) / 255 - mean) / std
    assert torch.allclose(out, expected, atol=1e-5)
    assert np.allclose(augment.denormalize(out[None].numpy())[0], img / 255, atol=1e-5)


def test_same_seed_same_augmentation():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    a = [augment.train_transform(seed=7)(image=img)["image"] for _ in range(2)]
    assert torch.equal(a[0], a[1])
