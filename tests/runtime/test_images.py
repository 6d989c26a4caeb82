"""The image policy: every mode becomes RGB in [0, 1]; bad inputs fail clearly."""

import numpy as np
import pytest
from PIL import Image

from edge_sdk.runtime.images import ImageError, pad_image, read_image, to_uint8


def gradient(h=40, w=60):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([xx * 4 % 256, yy * 6 % 256, (xx + yy) % 256]).astype(np.uint8)


def test_files_of_every_mode(tmp_path):
    rgb = gradient()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * np.uint16(257)).save(tmp_path / "gray16.png")
    Image.fromarray(np.dstack([rgb, np.zeros_like(rgb[..., 0])]), "RGBA").save(tmp_path / "clear.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    out = {p.stem: read_image(p) for p in tmp_path.iterdir()}
    for name, img in out.items():
        assert img.shape == (40, 60, 3) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1, name
    assert np.array_equal(to_uint8(out["rgb"]), rgb)
    assert np.allclose(out["gray"][..., 2], rgb[..., 0] / 255)
    assert np.allclose(out["gray16"][..., 0], rgb[..., 1].astype(np.float64) * 257 / 65535, atol=1e-6)
    assert np.allclose(out["clear"], 1.0)  # fully transparent over white


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(gradient(20, 50))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert read_image(tmp_path / "rot.jpg").shape == (50, 20, 3)


def test_arrays():
    rgb = gradient()
    assert np.allclose(read_image(rgb.astype(np.uint16) * np.uint16(257)), rgb / 255, atol=1e-6)
    assert read_image(rgb[..., 0]).shape == (40, 60, 3)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert np.allclose(read_image(rgba), rgb / 255)
    assert np.allclose(read_image(rgb / 255.0), rgb / 255)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4), bool), "uint8"),
    (np.zeros((4, 4, 5), np.uint8), "shape"),
    (np.full((4, 4, 3), 2.0), "lie in"),
    (np.full((4, 4, 3), np.nan), "finite"),
    (np.zeros((0, 4, 3), np.uint8), "no pixels"),
    (np.zeros((4, 4, 3), np.int32), "uint8 or uint16"),
])
def test_bad_arrays(bad, message):
    with pytest.raises(ImageError, match=message):
        read_image(bad)


def test_bad_files_and_bombs(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(tmp_path / "x.jpg")
    with pytest.raises(ImageError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    Image.fromarray(gradient(100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="limit"):
        read_image(tmp_path / "big.png", max_pixels=5000)


def test_padding_replicates_and_reports():
    img = read_image(gradient(40, 70))
    batch, padding = pad_image(img, 64, 64)
    assert batch.shape == (1, 3, 64, 128) and padding == (0, 0, 24, 58)
    assert np.array_equal(batch[0, :, 63, 127], img[39, 69])
    tiny, padding = pad_image(read_image(gradient(3, 2)), 64, 192)
    assert tiny.shape == (1, 3, 192, 192) and padding == (0, 0, 189, 190)


def test_resize_short_side_float_and_uint8_agree_and_never_upscale():
    from edge_sdk.runtime.images import resize_short_side

    rng = np.random.default_rng(0)
    img = (rng.random((90, 150, 3)) * 255).astype(np.uint8)
    small = resize_short_side(img, 30)
    assert small.shape == (30, 50, 3) and small.dtype == np.uint8
    as_float = resize_short_side(img.astype(np.float32) / 255, 30)
    assert as_float.dtype == np.float32 and as_float.shape == (30, 50, 3)
    assert np.abs(as_float * 255 - small.astype(np.float32)).max() <= 1.0  # same filter, rounding apart
    assert resize_short_side(img, 200) is img and resize_short_side(img, 0) is img


def test_find_images_and_psnr(tmp_path):
    import numpy as np

    from edge_sdk.runtime.images import find_images, psnr

    (tmp_path / "a").mkdir()
    for name in ("a/x.PNG", "b.gif", "c.txt", "d.jpeg"):
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)] == ["a/x.PNG", "b.gif", "d.jpeg"]
    assert [p.name for p in find_images(tmp_path, recursive=False)] == ["b.gif", "d.jpeg"]
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert psnr(a, b) == float("inf")
    b[0, 0, 0] = 255  # mse = 255² / 48
    assert abs(psnr(a, b) - 10 * np.log10(48)) < 1e-9
    assert abs(psnr(a / 255.0, b / 255.0, peak=1.0) - psnr(a, b)) < 1e-9
