"""predict.prepare on every kind of image file a user has: each Pillow mode (1, L, LA, P with and
without transparency, RGB, RGBA, CMYK, I;16, I;16B, I, F), 16-bit RGB(A) PNG and TIFF, EXIF-rotated
JPEG, animated GIF/PNG/WebP, WebP, BMP, TIFF, and the decompression-bomb guard. Each image is
32x32 (prepare's crop and resize leave it unchanged), so its 8-bit RGB output is compared pixel by
pixel with a reference computed here in numpy from the array the file was written from."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import subprocess_env
from resnet9 import predict

N = 32  # the model's input size: prepare's ImageOps.fit passes a 32x32 image unchanged
ENV = subprocess_env(OMP_NUM_THREADS="1")


def ramp(top: float, dtype) -> np.ndarray:
    """(32, 32) of ``dtype``: 0 at the top left rising row by row to ``top`` at the bottom right."""
    return np.round(np.linspace(0, top, N * N)).reshape(N, N).astype(dtype)


def colour_ramp(top: int, dtype) -> np.ndarray:
    """(32, 32, 3) of ``dtype``: three different gradients (rising, falling, rising by column)."""
    r = ramp(top, dtype)
    return np.dstack([r, top - r, r.T])


def gray3(v: np.ndarray) -> np.ndarray:
    """(H, W) 0-255 values -> the (H, W, 3) uint8 RGB a gray image becomes."""
    return np.repeat(np.asarray(v, np.uint8)[..., None], 3, axis=2)


def over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 3) colours with (H, W) alpha, both 0-255, composited onto white: float (H, W, 3)."""
    a = alpha[..., None].astype(np.float64) / 255
    return rgb * a + 255 * (1 - a)


def prepared(path: Path) -> np.ndarray:
    """prepare's output as a (32, 32, 3) uint8 array (checking it is one)."""
    image = predict.prepare(path)
    assert image.mode == "RGB" and image.size == (N, N), (image.mode, image.size)
    out = np.asarray(image)
    assert out.dtype == np.uint8 and out.shape == (N, N, 3)
    return out


def assert_close(out: np.ndarray, expected: np.ndarray, tol: float = 0) -> None:
    diff = np.abs(out.astype(np.float64) - expected)
    assert diff.max() <= tol, f"max |diff| {diff.max()} > {tol}"


def png16(path: Path, pixels: np.ndarray, colour_type: int) -> Path:
    """Write a 16-bit PNG by hand (PNG spec: IHDR, one zlib IDAT of filter-0 rows, IEND), for
    the layouts OpenCV cannot write (colour type 4, gray + alpha)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    h, w = pixels.shape[:2]
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


# ---- 16- and 32-bit images: scaled by their type's range, not clipped --------------------

def test_16bit_grayscale_png_is_a_gradient_not_white(tmp_path):
    """Issue 32: a 0-65535 gradient came out 99.2% white (Pillow clips I;16 at 255)."""
    v = ramp(65535, np.uint16)
    path = tmp_path / "gray16.png"
    assert cv2.imwrite(str(path), v)  # OpenCV writes a uint16 array as a 16-bit PNG
    with Image.open(path) as im:
        assert im.mode in ("I;16", "I")  # Pillow 12.3: I;16 (older versions: I)
    out = prepared(path)
    assert_close(out, gray3(np.round(v / 257)))  # 65535 -> 255, 257 -> 1
    assert (out == 255).mean() < 0.01 and len(np.unique(out)) == 256
    assert (np.diff(out[..., 0].ravel().astype(int)) >= 0).all()  # still rising


def _i16_png_pillow(path: Path, v: np.ndarray) -> None:
    Image.fromarray(v).save(path)  # uint16 -> I;16


def _i16_tiff(path: Path, v: np.ndarray) -> None:
    Image.fromarray(v).save(path)


def _i16b_tiff(path: Path, v: np.ndarray) -> None:
    Image.frombytes("I;16B", (N, N), v.astype(">u2").tobytes()).save(path)


def _i_pgm(path: Path, v: np.ndarray) -> None:
    assert cv2.imwrite(str(path), v)  # a 16-bit PGM, which Pillow opens as mode I


@pytest.mark.parametrize("name, write, mode", [
    ("pillow.png", _i16_png_pillow, "I;16"),
    ("gray16.tif", _i16_tiff, "I;16"),
    ("gray16b.tif", _i16b_tiff, "I;16B"),
    ("gray16.pgm", _i_pgm, "I"),
], ids=["png-I;16", "tiff-I;16", "tiff-I;16B", "pgm-I"])
def test_16bit_grayscale_files_are_scaled_by_257(tmp_path, name, write, mode):
    v = ramp(65535, np.uint16)
    write(tmp_path / name, v)
    with Image.open(tmp_path / name) as im:
        assert im.mode == mode
    assert_close(prepared(tmp_path / name), gray3(np.round(v / 257)))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_keeps_the_high_byte(tmp_path, suffix):
    """Pillow decodes 16-bit RGB to 8-bit itself, keeping the high byte: v >> 8, within 1 of
    round(v / 257), never the low byte."""
    v = colour_ramp(65535, np.uint16)
    v[..., 2] = np.uint16(0x12FF)  # high byte 0x12, low byte 0xFF: tells them apart
    path = tmp_path / f"rgb16{suffix}"
    assert cv2.imwrite(str(path), v[..., ::-1])  # OpenCV wants BGR
    out = prepared(path)
    assert_close(out, v >> 8)
    assert_close(out, np.round(v / 257), tol=1)
    assert (out[..., 2] == 0x12).all()


def test_16bit_rgba_png_is_scaled_and_composited_onto_white(tmp_path):
    v = colour_ramp(65535, np.uint16)
    alpha = ramp(65535, np.uint16).T
    path = tmp_path / "rgba16.png"
    assert cv2.imwrite(str(path), np.dstack([v[..., ::-1], alpha]))  # BGRA
    # Pillow keeps the high bytes (as for 16-bit RGB), then composites (rounding: within 1)
    assert_close(prepared(path), over_white(v >> 8, alpha >> 8), tol=1)


def test_16bit_gray_with_alpha_png_is_scaled_and_composited_onto_white(tmp_path):
    v, alpha = ramp(65535, np.uint16), ramp(65535, np.uint16).T
    path = png16(tmp_path / "gray_alpha16.png", np.dstack([v, alpha]), colour_type=4)
    with Image.open(path) as im:
        assert im.mode == "RGBA"  # Pillow 12.3 opens 16-bit gray + alpha as RGBA, high bytes
    assert_close(prepared(path), over_white(gray3(v >> 8), alpha >> 8), tol=1)


def test_16bit_grayscale_transparency_key_becomes_white(tmp_path):
    v = ramp(65535, np.uint16)
    path = tmp_path / "gray16_trns.png"
    Image.fromarray(v).save(path, transparency=int(v[5, 7]))  # PNG tRNS: one gray is clear
    expected = np.round(v / 257)
    expected[v == v[5, 7]] = 255
    assert_close(prepared(path), gray3(expected))


@pytest.mark.parametrize("top, rule", [
    (2**31 - 1, lambda v: np.round(v * 255 / (2**31 - 1))),  # 32-bit data: the int32 range
    (65535, lambda v: np.round(v / 257)),                     # 16-bit data in an I image
    (255, lambda v: v),                                        # 8-bit data in an I image
], ids=["32-bit", "16-bit", "8-bit"])
def test_mode_i_is_scaled_by_the_range_its_values_need(tmp_path, top, rule):
    v = ramp(top, np.int32)
    path = tmp_path / "int32.tif"
    Image.fromarray(v).save(path)
    with Image.open(path) as im:
        assert im.mode == "I"
    assert_close(prepared(path), gray3(rule(v.astype(np.float64))))


def test_mode_i_negative_values_become_black(tmp_path):
    v = ramp(65535, np.int32) - 1000
    path = tmp_path / "signed.tif"
    Image.fromarray(v).save(path)
    assert_close(prepared(path), gray3(np.round(np.clip(v, 0, None) / 257)))


@pytest.mark.parametrize("case", ["0-1", "0-255", "out of range and NaN"])
def test_mode_f_is_taken_as_0_1_or_0_255_and_clipped(tmp_path, case):
    if case == "0-1":
        v = ramp(1.0, np.float32)
        expected = np.round(v.astype(np.float64) * 255)
    elif case == "0-255":
        v = ramp(255.0, np.float32) + np.float32(0.25)
        expected = np.round(v.astype(np.float64))
    else:
        v = ramp(600.0, np.float32) - 200  # -200 .. 400
        v[0, :4] = np.nan
        expected = np.clip(np.round(np.nan_to_num(v.astype(np.float64))), 0, 255)
    path = tmp_path / "float.tif"
    Image.fromarray(v).save(path)
    with Image.open(path) as im:
        assert im.mode == "F"
    assert_close(prepared(path), gray3(expected))


# ---- 8-bit modes -----------------------------------------------------------------------

def test_mode_1_is_black_or_white(tmp_path):
    bits = (ramp(1023, np.int32) % 3) == 0
    path = tmp_path / "bilevel.png"
    Image.fromarray(bits).save(path)  # bool -> mode 1
    with Image.open(path) as im:
        assert im.mode == "1"
    assert_close(prepared(path), gray3(np.where(bits, 255, 0)))


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp"])
def test_mode_l_is_repeated_in_the_three_channels(tmp_path, suffix):
    v = ramp(255, np.uint8)
    path = tmp_path / f"gray{suffix}"
    Image.fromarray(v).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    assert_close(prepared(path), gray3(v))


@pytest.mark.parametrize("suffix, options", [
    (".png", {}), (".bmp", {}), (".tif", {"compression": "tiff_lzw"}),
    (".webp", {"lossless": True}),
])
def test_rgb_files_pass_unchanged(tmp_path, suffix, options):
    v = colour_ramp(255, np.uint8)
    path = tmp_path / f"rgb{suffix}"
    Image.fromarray(v).save(path, **options)
    assert_close(prepared(path), v)


def _palette_image(indices: np.ndarray, palette: np.ndarray) -> Image.Image:
    image = Image.fromarray(indices.astype(np.uint8), "P")
    image.putpalette(palette.astype(np.uint8).ravel().tolist())
    return image


PALETTE = np.stack([np.arange(256), (np.arange(256) * 7) % 256, 255 - np.arange(256)], 1)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".gif"])
def test_palette_image_is_looked_up(tmp_path, suffix):
    idx = ramp(255, np.uint8)
    path = tmp_path / f"palette{suffix}"
    _palette_image(idx, PALETTE).save(path)
    assert_close(prepared(path), PALETTE[idx])


def test_cmyk_is_converted_as_pillow_does_without_a_profile(tmp_path):
    c = colour_ramp(255, np.uint8)
    cmyk = np.dstack([c, ramp(255, np.uint8).T // 2])
    path = tmp_path / "cmyk.tif"
    Image.fromarray(cmyk, "CMYK").save(path)
    # Pillow's naive formula: channel = (255 - ink) * (255 - black) / 255
    expected = (255 - c.astype(np.float64)) * (255 - cmyk[..., 3:].astype(np.float64)) / 255
    assert_close(prepared(path), expected, tol=1)


# ---- transparency: composited onto white -----------------------------------------------

def test_rgba_and_la_are_composited_onto_white(tmp_path):
    v, alpha = colour_ramp(255, np.uint8), ramp(255, np.uint8).T
    Image.fromarray(np.dstack([v, alpha]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([v[..., 0], alpha]), "LA").save(tmp_path / "la.png")
    Image.fromarray(np.dstack([v, alpha]), "RGBA").save(tmp_path / "rgba.webp", lossless=True)
    assert_close(prepared(tmp_path / "rgba.png"), over_white(v, alpha), tol=1)
    assert_close(prepared(tmp_path / "rgba.webp"), over_white(v, alpha), tol=1)
    assert_close(prepared(tmp_path / "la.png"), over_white(gray3(v[..., 0]), alpha), tol=1)


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_transparent_index_becomes_white(tmp_path, suffix):
    idx = ramp(255, np.uint8)
    path = tmp_path / f"palette_clear{suffix}"
    _palette_image(idx, PALETTE).save(path, transparency=40)
    expected = PALETTE[idx].astype(np.float64)
    expected[idx == 40] = 255
    assert_close(prepared(path), expected)


def test_palette_alpha_per_entry_is_composited_onto_white(tmp_path):
    idx = ramp(255, np.uint8)
    alphas = (np.arange(256) * 3) % 256  # PNG tRNS: an alpha for every palette entry
    path = tmp_path / "palette_alpha.png"
    _palette_image(idx, PALETTE).save(path, transparency=bytes(alphas.astype(np.uint8)))
    with Image.open(path) as im:
        assert im.mode == "P" and "transparency" in im.info
    assert_close(prepared(path), over_white(PALETTE[idx], alphas[idx]), tol=1)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_transparency_key_of_l_and_rgb_becomes_white(tmp_path, mode):
    v = colour_ramp(255, np.uint8) if mode == "RGB" else ramp(255, np.uint8)
    key = v[3, 9]
    path = tmp_path / f"{mode}_key.png"
    Image.fromarray(v).save(path, transparency=int(key) if mode == "L" else tuple(map(int, key)))
    expected = (v if mode == "RGB" else gray3(v)).astype(np.float64)
    clear = (v == key) if mode == "L" else (v == key).all(axis=2)
    expected[clear] = 255
    assert_close(prepared(path), expected)


# ---- EXIF orientation, animations ------------------------------------------------------

def _upright() -> np.ndarray:
    """(32, 32, 3) uint8: dark left half, bright right half, a gentle vertical gradient (smooth,
    so JPEG keeps it close)."""
    image = np.zeros((N, N, 3), np.uint8)
    image[:, : N // 2] = 40
    image[:, N // 2:] = 210
    image[..., 1] += np.linspace(0, 40, N).astype(np.uint8)[:, None]
    return image


# EXIF orientation -> how many quarter turns anticlockwise (np.rot90) the stored pixels are
# from upright, i.e. what a camera held that way writes.
ORIENTATIONS = {3: 2, 6: 1, 8: 3}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_rotated_jpeg_comes_out_upright(tmp_path, orientation):
    upright = _upright()
    stored = np.rot90(upright, ORIENTATIONS[orientation]).copy()
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    path = tmp_path / f"phone_{orientation}.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    out = prepared(path).astype(np.float64)
    assert np.abs(out - upright).mean() < 8  # JPEG loss only
    left, right = out[:, : N // 2].mean(), out[:, N // 2:].mean()
    assert left < 90 < 160 < right  # the dark half is on the left, as taken
    no_exif = tmp_path / "stored.jpg"
    Image.fromarray(stored).save(no_exif, quality=95)
    assert np.abs(prepared(no_exif).astype(np.float64) - upright).mean() > 40  # the test bites


@pytest.mark.parametrize("suffix, options", [
    (".gif", {}), (".png", {}), (".webp", {"lossless": True}),
])
def test_animation_gives_its_first_frame(tmp_path, suffix, options):
    first = _upright()
    frames = [Image.fromarray(first), Image.new("RGB", (N, N), (0, 0, 255)),
              Image.new("RGB", (N, N), (0, 255, 0))]
    if suffix == ".gif":  # GIF frames are palette images: a few colours survive exactly
        frames = [f.quantize(colors=64, dither=Image.Dither.NONE) for f in frames]
        first = np.asarray(frames[0].convert("RGB"))
    path = tmp_path / f"animated{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
    with Image.open(path) as im:
        assert im.n_frames == 3
    assert_close(prepared(path), first)


# ---- the decompression-bomb guard ------------------------------------------------------

@pytest.mark.parametrize("limit", [3000, 1000], ids=["warning", "error"])
def test_decompression_bomb_guard_gives_one_line_naming_the_file(tmp_path, monkeypatch, limit):
    """64x64 = 4,096 pixels: over 3,000 Pillow only warns, over 2 x 1,000 it raises; both are
    the one-line ImageFileError."""
    path = tmp_path / "huge.png"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(predict.ImageFileError) as err:
        predict.prepare(path)
    message = str(err.value)
    assert message == (f"{path}: more than {limit:,} pixels (Pillow's Image.MAX_IMAGE_PIXELS), "
                       "refused as a possible decompression bomb")


def test_decompression_bomb_in_predict_is_one_line_and_exit_1(tmp_path, monkeypatch, tiny_model,
                                                            capsys, one_thread):
    huge, small = tmp_path / "huge.png", tmp_path / "small.png"
    Image.new("RGB", (64, 64)).save(huge)
    Image.new("RGB", (N, N)).save(small)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    code = predict.main([str(huge), str(small), "--model", str(tiny_model), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == predict.EXIT_BAD_IMAGE
    assert err.splitlines() == [f"predict: error: {huge}: more than 3,000 pixels (Pillow's "
                                "Image.MAX_IMAGE_PIXELS), refused as a possible decompression bomb"]
    assert [line.split(": ")[0] for line in out.splitlines()] == [str(small)]


# ---- end to end ------------------------------------------------------------------------

def test_predict_cli_classifies_a_16bit_png_as_its_8bit_equivalent(tmp_path, tiny_model):
    """python -m resnet9.predict on a 16-bit PNG: exit 0, and the same probabilities as an
    8-bit PNG holding round(v / 257), i.e. the gradient, not a white square."""
    v = ramp(65535, np.uint16)
    wide, narrow = tmp_path / "gray16.png", tmp_path / "gray8.png"
    assert cv2.imwrite(str(wide), v)
    Image.fromarray(np.round(v / 257).astype(np.uint8)).save(narrow)
    proc = subprocess.run([sys.executable, "-m", "resnet9.predict", str(wide), str(narrow),
                           "--json", "--model", str(tiny_model), "--device", "cpu",
                           "--top-k", "10"],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    result = json.loads(proc.stdout)
    assert result["errors"] == [] and len(result["predictions"]) == 2
    got, expected = ({t["class"]: t["probability"] for t in p["top_k"]}
                     for p in result["predictions"])
    assert got == expected
