"""Still-image reading: every format and odd mode ends up RGB float32 HWC in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from workbench.errors import MediaError
from workbench.images import decode_image_bytes, encode_image, read_image, to_uint8, write_image


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp", ".tif"])
def test_formats_round_trip(tmp_path, rng, suffix):
    img = rng.uniform(0, 1, (40, 60, 3)).astype(np.float32)
    path = write_image(tmp_path / f"x{suffix}", img, quality=100)
    back = read_image(path)
    assert back.shape == (40, 60, 3) and back.dtype == np.float32
    assert 0.0 <= back.min() and back.max() <= 1.0
    tolerance = 0.02 if suffix in (".png", ".bmp", ".tif") else 0.25
    assert np.abs(back - img).mean() < tolerance


def test_rgba_grey_16bit_and_palette(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent: alpha is dropped, colour kept
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (20, 30, 3) and np.allclose(out[..., 0], 200 / 255)

    grey = (np.arange(600).reshape(20, 30) % 256).astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (20, 30, 3) and np.allclose(out[..., 0], out[..., 2])

    deep = (np.arange(600).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    assert out.max() <= 1.0 and out.max() == pytest.approx(599 * 100 / 65535, abs=1e-3)

    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (20, 30, 3)


def test_exif_orientation_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # left half white
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    pil.save(tmp_path / "o.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "o.jpg")
    assert out.shape == (40, 20, 3)  # portrait after orientation
    assert out[:15].mean() > 0.9 and out[25:].mean() < 0.1  # white half is now on top


def test_real_rgba_still(data_file):
    out = read_image(data_file("stills/edge/32bit.png"))
    assert out.shape == (1200, 626, 3) and out.dtype == np.float32


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_bad_files_raise_media_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError) as info:
        read_image(path)
    assert "bad.jpg" in str(info.value)


def test_truncated_jpeg(tmp_path, data_file):
    data = data_file("stills/obama/obama1.jpg").read_bytes()
    path = tmp_path / "trunc.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match="trunc.jpg"):
        read_image(path)


def test_tiny_image_rejected(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "t.png")
    with pytest.raises(MediaError, match="too small"):
        read_image(tmp_path / "t.png")


def test_encode_decode_and_uint8_rounding(rng):
    img = rng.uniform(0, 1, (16, 16, 3)).astype(np.float32)
    back = decode_image_bytes(encode_image(img, "png"))
    assert np.array_equal(to_uint8(back), to_uint8(img))
    with pytest.raises(MediaError):
        decode_image_bytes(b"junk")
