"""resnet9.batch_augment: exact outputs for given draws, the draws' distribution, agreement
with the albumentations pipeline of resnet9.augment, and DeviceLoader's epochs. CPU only."""

import math

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from resnet9 import augment, cifar10, preprocess
from resnet9 import batch_augment as B
from resnet9.data import Split
from resnet9.loaders import DeviceLoader

MEAN, STD = np.array(cifar10.MEAN), np.array(cifar10.STD)
SIGMAS = 6  # a seeded draw; even unseeded, a 6-sigma bin miss has odds of about 1e-9


def draws(**kw) -> B.AugmentDraws:
    """One image's draws; unspecified ones are 0 / no flip."""
    t = {k: torch.tensor([kw.get(k, 0)]) for k in ("crop_y", "crop_x", "hole_y", "hole_x")}
    return B.AugmentDraws(**t, flip=torch.tensor([bool(kw.get("flip", False))]))


def albu_normalize(hwc_uint8: np.ndarray) -> torch.Tensor:
    """albumentations' own Normalize, as (3, 32, 32)."""
    out = A.Normalize(mean=cifar10.MEAN, std=cifar10.STD)(image=hwc_uint8)
    return torch.from_numpy(out["image"]).permute(2, 0, 1)


def coded_image() -> np.ndarray:
    """R = 8 + 7 * row, G = 8 + 7 * col, B = 255: each pixel tells where it came from, and no
    pixel is all zero (zero padding) or the CutOut fill (125, 123, 114)."""
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.stack([8 + 7 * r, 8 + 7 * c, np.full_like(r, 255)], -1).astype(np.uint8)


def decode(out: torch.Tensor) -> dict[str, np.ndarray]:
    """Recover crop_y, crop_x, flip, hole_y, hole_x of zero-padded augmentations of
    :func:`coded_image`, from (N, 3, 32, 32) normalized outputs."""
    u = np.rint((out.numpy() * STD[:, None, None] + MEAN[:, None, None]) * 255).astype(int)
    hole = (u == np.array(cifar10.MEAN_PIXEL)[:, None, None]).all(1)
    assert (hole.sum((1, 2)) == 64).all()
    valid = ~hole & ~(u == 0).all(1)
    y, x = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    src_r, src_c = (u[:, 0] - 8) / 7, (u[:, 1] - 8) / 7

    def const(v):  # the value of v over the valid pixels, which must be one number
        lo, hi = np.where(valid, v, np.inf).min((1, 2)), np.where(valid, v, -np.inf).max((1, 2))
        return lo, hi

    crop_y, hi = const(src_r - y + 4)
    assert (crop_y == hi).all()
    nf_lo, nf_hi = const(src_c - x + 4)  # unflipped: src_c = crop_x + x - 4
    f_lo, f_hi = const(src_c + x - 27)  # flipped: src_c = crop_x + 31 - x - 4
    flip = nf_lo != nf_hi
    assert (np.where(flip, f_lo == f_hi, True)).all()
    return {"crop_y": crop_y.astype(int), "crop_x": np.where(flip, f_lo, nf_lo).astype(int),
            "flip": flip, "hole_y": hole.any(2).argmax(1), "hole_x": hole.any(1).argmax(1)}


def test_one_image_by_hand():
    img = coded_image()
    p = draws(crop_y=0, crop_x=8, flip=True, hole_y=3, hole_x=20)
    out = B.apply(torch.from_numpy(img)[None], p, "reflect")[0]
    # Output (y, x) reads padded (y, 8 + 31 - x) = source (y - 4, 35 - x), reflected (101) inside.
    refl = lambda i: abs(i) if i < 32 else 62 - i  # noqa: E731
    want = np.empty_like(img)
    for y in range(32):
        for x in range(32):
            want[y, x] = img[refl(y - 4), refl(35 - x)]
    want[3:11, 20:28] = cifar10.MEAN_PIXEL
    assert torch.equal(out, albu_normalize(want))
    assert torch.equal(out[:, 0, 31], albu_normalize(img)[:, 4, 4])  # padded (0, 8) = src (4, 4)


@pytest.mark.parametrize("pad_mode, border", [("reflect", cv2.BORDER_REFLECT_101),
                                              ("zero", cv2.BORDER_CONSTANT)])
def test_matches_albumentations_pad_then_slice(pad_mode, border):
    imgs = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    p = B.draw(64, torch.Generator().manual_seed(1), "cpu")
    out = B.apply(torch.from_numpy(imgs), p, pad_mode)
    pad = A.PadIfNeeded(40, 40, border_mode=border, fill=0)
    for i, img in enumerate(imgs):
        cy, cx, hy, hx = (int(getattr(p, k)[i]) for k in ("crop_y", "crop_x", "hole_y", "hole_x"))
        crop = pad(image=img)["image"][cy:cy + 32, cx:cx + 32]
        crop = np.ascontiguousarray(crop[:, ::-1] if p.flip[i] else crop)
        crop[hy:hy + 8, hx:hx + 8] = cifar10.MEAN_PIXEL
        assert torch.equal(out[i], albu_normalize(crop)), i


def test_decode_recovers_many_draws():
    p = B.draw(2000, torch.Generator().manual_seed(2), "cpu")
    imgs = torch.from_numpy(coded_image()).expand(2000, 32, 32, 3)
    got = decode(B.apply(imgs, p, "zero"))
    for k, v in got.items():
        assert np.array_equal(v, getattr(p, k).numpy()), k


def test_output_shape_dtype_layout_and_input_layouts():
    imgs = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), np.uint8))
    p = B.draw(5, torch.Generator().manual_seed(0), "cpu")
    out = B.apply(imgs, p)
    assert out.shape == (5, 3, 32, 32) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, B.apply(imgs.permute(0, 3, 1, 2).contiguous(), p))
    assert torch.equal(out, B.apply(imgs, p))  # deterministic given the draws
    test = preprocess.normalize(imgs)
    assert test.shape == (5, 3, 32, 32) and test.is_contiguous(memory_format=torch.channels_last)
    want = torch.stack([augment.test_transform()(image=i)["image"] for i in imgs.numpy()])
    assert torch.allclose(test, want, atol=1e-6)
    with pytest.raises(ValueError):
        B.apply(imgs.float(), p)
    with pytest.raises(ValueError):
        B.apply(imgs, p, "edge")


def test_hole_is_one_8x8_square_of_the_normalized_mean_pixel():
    imgs = torch.full((500, 32, 32, 3), 200, dtype=torch.uint8)
    p = B.draw(500, torch.Generator().manual_seed(3), "cpu")
    out = B.apply(imgs, p)
    fill = torch.tensor((np.array(cifar10.MEAN_PIXEL) / 255 - MEAN) / STD, dtype=torch.float32)
    assert fill.abs().max() < 0.005  # the rounded mean pixel: ~0, not exactly 0, after Normalize
    hole = torch.zeros(500, 32, 32, dtype=torch.bool)
    for i in range(500):
        hole[i, p.hole_y[i]:p.hole_y[i] + 8, p.hole_x[i]:p.hole_x[i] + 8] = True
    assert (hole.sum((1, 2)) == 64).all()
    assert torch.allclose(out.permute(0, 2, 3, 1)[hole], fill.expand(500 * 64, 3), atol=1e-6)
    rest = out.permute(0, 2, 3, 1)[~hole]
    assert torch.equal(rest, preprocess.normalize(imgs[:1]).permute(0, 2, 3, 1)[0, 0, 0].expand_as(rest))


def _uniform_bins_ok(v: np.ndarray, high: int) -> None:
    """``v`` takes exactly the values 0..high-1, each within SIGMAS binomial sd of n / high."""
    n, p = len(v), 1 / high
    counts = np.bincount(v, minlength=high)
    assert len(counts) == high and (counts > 0).all()
    assert np.abs(counts - n * p).max() <= SIGMAS * math.sqrt(n * p * (1 - p)), counts


def test_draws_are_uniform_over_the_albumentations_ranges():
    n = 200_000
    p = B.draw(n, torch.Generator().manual_seed(4), "cpu")
    for k, high in (("crop_y", 9), ("crop_x", 9), ("hole_y", 25), ("hole_x", 25)):
        v = getattr(p, k)
        assert v.dtype == torch.int64 and v.shape == (n,)
        _uniform_bins_ok(v.numpy(), high)
    assert p.flip.dtype == torch.bool
    assert abs(p.flip.float().mean() - 0.5) <= SIGMAS * math.sqrt(0.25 / n)
    # independent draws: no correlation between any two of the five
    m = np.corrcoef(np.stack([getattr(p, k).numpy().astype(float)
                              for k in ("crop_y", "crop_x", "hole_y", "hole_x", "flip")]))
    assert np.abs(m - np.eye(5)).max() <= SIGMAS / math.sqrt(n)
    again = B.draw(n, torch.Generator().manual_seed(4), "cpu")
    assert all(torch.equal(getattr(p, k), getattr(again, k)) for k in ("crop_x", "hole_y", "flip"))


def test_same_distribution_as_the_albumentations_pipeline():
    """Decode 4,000 outputs of augment.train_transform('zero'): the crop corner, flip and
    CutOut corner cover the same values as ours, each roughly uniform (loose: 6 sigma)."""
    t, img = augment.train_transform("zero", seed=5), coded_image()
    n = 4000
    albu = decode(torch.stack([t(image=img)["image"] for _ in range(n)]))
    for k, high in (("crop_y", 9), ("crop_x", 9), ("hole_y", 25), ("hole_x", 25)):
        _uniform_bins_ok(albu[k], high)
    assert abs(albu["flip"].mean() - 0.5) <= SIGMAS * math.sqrt(0.25 / n)


def _split(n: int) -> Split:
    x = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return Split(x, np.arange(n, dtype=np.int64))  # label = index, to track samples


def test_device_loader_covers_every_sample_once_and_is_reproducible():
    split = _split(1000)
    make = lambda seed, **kw: DeviceLoader(  # noqa: E731
        split, 128, "cpu", generator=torch.Generator().manual_seed(seed), **kw)
    loader = make(0)
    assert len(loader) == 8 and len(make(0, drop_last=True)) == 7
    e1, e2 = list(loader), list(loader)
    for epoch in (e1, e2):
        assert [len(y) for _, y in epoch] == [128] * 7 + [104]
        assert torch.equal(torch.cat([y for _, y in epoch]).sort().values, torch.arange(1000))
        x, y = epoch[0]
        assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(e1[0][1], e2[0][1])  # a new order each epoch
    same = list(make(0))
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(e1, same))
    assert not torch.equal(list(make(1))[0][1], e1[0][1])
    plain = list(make(0, shuffle=False, augment=False))
    assert torch.equal(torch.cat([y for _, y in plain]), torch.arange(1000))
    assert torch.equal(torch.cat([x for x, _ in plain]), preprocess.normalize(torch.from_numpy(split.x)))
