"""Tests for softmaxlab.images: user photos to Fashion-MNIST-style 28x28 arrays."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from softmaxlab import images
from softmaxlab.images import ImageInputError, load_image, to_tensor

WHITE = 255
DARK = 30


# --------------------------------------------------------------------------- helpers


def bbox(a: np.ndarray, level: int = 60) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the pixels brighter than ``level`` (inclusive)."""
    rows = np.flatnonzero((a > level).any(axis=1))
    cols = np.flatnonzero((a > level).any(axis=0))
    assert rows.size and cols.size, "no bright pixel in the output"
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def trouser(width: int = 100, height: int = 160) -> Image.Image:
    """A dark pair of trousers on white: waistband and two legs with a gap, taller than wide."""
    img = Image.new("L", (width, height), WHITE)
    d = ImageDraw.Draw(img)
    d.rectangle((30, 20, 70, 35), fill=DARK)  # waistband
    d.rectangle((30, 20, 45, 140), fill=DARK)  # left leg
    d.rectangle((55, 20, 70, 140), fill=DARK)  # right leg
    return img


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def assert_tall_and_centred(out: np.ndarray, size: int = 28) -> tuple[int, int, int, int]:
    top, bottom, left, right = bbox(out)
    assert (top, bottom) == (0, size - 1), "the longest (vertical) side must span the image"
    assert right - left + 1 < size // 2, "the object must stay narrow"
    assert abs(left - (size - 1 - right)) <= 1, "the object must be horizontally centred"
    return top, bottom, left, right


def assert_wide_and_centred(out: np.ndarray, size: int = 28) -> None:
    top, bottom, left, right = bbox(out)
    assert (left, right) == (0, size - 1), "the longest (horizontal) side must span the image"
    assert bottom - top + 1 < size // 2, "the object must stay flat"
    assert abs(top - (size - 1 - bottom)) <= 1, "the object must be vertically centred"


# --------------------------------------------------------------------------- framing


def test_dark_trouser_on_white_becomes_light_on_black_trimmed_and_centred(tmp_path):
    out = load_image(save(trouser(), tmp_path / "trouser.png"))
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    # light on black
    assert out[0, 0] == out[0, -1] == out[-1, 0] == out[-1, -1] == 0
    assert out.max() >= 200
    _, _, left, right = assert_tall_and_centred(out)
    # 41 x 121 object -> about 9.5 x 28
    assert 8 <= right - left + 1 <= 11
    # the gap between the legs is still dark in the lower half
    mid = (left + right) // 2
    assert out[20:27, mid].max() < 100
    assert out[20:27, left + 1].min() > 150


def test_trim_false_keeps_the_margins(tmp_path):
    path = save(trouser(), tmp_path / "trouser.png")
    out = load_image(path, trim=False)
    top, bottom, _, _ = bbox(out)
    # the whole 100 x 160 picture is scaled to 17.5 x 28: the object has margins on every side
    assert top >= 2 and bottom <= 25
    assert out[0].max() == 0 and out[-1].max() == 0
    assert not np.array_equal(out, load_image(path))


def test_size_parameter(tmp_path):
    out = load_image(save(trouser(), tmp_path / "trouser.png"), size=56)
    assert out.shape == (56, 56) and out.dtype == np.uint8
    assert_tall_and_centred(out, size=56)


def test_small_image_is_scaled_up(tmp_path):
    img = Image.new("L", (6, 12), WHITE)
    ImageDraw.Draw(img).rectangle((2, 2, 3, 9), fill=0)  # 2 x 8 object
    out = load_image(save(img, tmp_path / "tiny.png"))
    assert out.shape == (28, 28)
    _, _, left, right = assert_tall_and_centred(out)
    assert 5 <= right - left + 1 <= 9  # 2 x 8 -> 7 x 28


def light_on_black() -> Image.Image:
    img = Image.new("L", (80, 80), 0)
    ImageDraw.Draw(img).rectangle((10, 30, 69, 49), fill=220)  # 60 x 20, wide
    return img


def test_never_keeps_light_on_black_and_auto_does_not_invert_it(tmp_path):
    path = save(light_on_black(), tmp_path / "light.png")
    never = load_image(path, invert="never")
    auto = load_image(path, invert="auto")
    assert never[0, 0] == 0 and never.max() >= 200
    assert_wide_and_centred(never)
    np.testing.assert_array_equal(auto, never)


def test_always_inverts_light_on_black(tmp_path):
    out = load_image(save(light_on_black(), tmp_path / "light.png"), invert="always")
    # dark object on white: nothing is brighter than the white background, so nothing is trimmed
    assert out[0, 0] == out[-1, -1] == 255
    assert out[14, 14] < 60  # the (now dark) object in the middle


def test_auto_inverts_dark_on_white_like_always(tmp_path):
    path = save(trouser(), tmp_path / "trouser.png")
    auto = load_image(path)
    np.testing.assert_array_equal(auto, load_image(path, invert="always"))
    assert not np.array_equal(auto, load_image(path, invert="never"))


def test_auto_uses_the_median_so_an_object_touching_the_border_does_not_flip_it(tmp_path):
    # Light grey background; a black band along the top covers 100 of the 236 border pixels.
    # The border's mean (about 93) is dark, its median (160) light: the background is light.
    img = Image.new("L", (60, 60), 160)
    ImageDraw.Draw(img).rectangle((0, 0, 59, 20), fill=0)
    out = load_image(save(img, tmp_path / "band.png"))
    assert out.max() >= 250  # inverted: the black band is now white
    assert_wide_and_centred(out)  # and it is what gets trimmed to


def test_blank_image_is_kept_whole(tmp_path):
    out = load_image(save(Image.new("L", (40, 30), WHITE), tmp_path / "blank.png"))
    assert out.shape == (28, 28)
    assert out.max() == 0  # white -> black; nothing to trim, no crash


def test_jpeg_noise_does_not_defeat_trimming(tmp_path):
    path = save(trouser().convert("RGB"), tmp_path / "trouser.jpg", quality=60)
    out = load_image(path)
    assert out[0, 0] <= 10
    assert_tall_and_centred(out)


# --------------------------------------------------------------------------- file formats


def test_transparent_background_is_composited_onto_white(tmp_path):
    # Transparent *black* pixels: without compositing the background would read as black.
    img = Image.new("RGBA", (60, 100), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle((20, 10, 39, 89), fill=(40, 40, 40, 255))
    out = load_image(save(img, tmp_path / "cutout.png"))
    assert out[0, 0] == out[-1, -1] == 0  # transparent area ends up black
    assert out.max() >= 200  # the dark object ends up light
    assert_tall_and_centred(out)


def l_shape(w: int = 120, h: int = 60) -> Image.Image:
    """Dark horizontal bar with a stub hanging down from its left end, on white."""
    img = Image.new("RGB", (w, h), (WHITE,) * 3)
    d = ImageDraw.Draw(img)
    d.rectangle((10, 10, 109, 25), fill=(0, 0, 0))
    d.rectangle((10, 26, 35, 50), fill=(0, 0, 0))
    return img


def empty_quarter(out: np.ndarray) -> str:
    """Which quarter of the object's bounding box holds the least light."""
    top, bottom, left, right = bbox(out)
    box = out[top : bottom + 1, left : right + 1].astype(float)
    h, w = box.shape
    quarters = {
        "top-left": box[: h // 2, : w // 2].sum(),
        "top-right": box[: h // 2, (w + 1) // 2 :].sum(),
        "bottom-left": box[(h + 1) // 2 :, : w // 2].sum(),
        "bottom-right": box[(h + 1) // 2 :, (w + 1) // 2 :].sum(),
    }
    return min(quarters, key=quarters.get)


@pytest.mark.parametrize(
    "orientation, portrait, empty",
    [
        # Stored: bar along the top, stub hanging from its left end: bottom-right is empty.
        (1, False, "bottom-right"),
        # 3: rotated 180 degrees: bar along the bottom, stub up from its right end.
        (3, False, "top-left"),
        # 6: displayed after rotating 90 degrees clockwise: bar down the right side, stub at its
        # top pointing left.
        (6, True, "bottom-left"),
        # 8: rotated 90 degrees counter-clockwise: bar down the left side, stub at its bottom
        # pointing right.
        (8, True, "top-right"),
    ],
)
def test_exif_orientation_is_applied(tmp_path, orientation, portrait, empty):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(l_shape(), tmp_path / "photo.jpg", exif=exif, quality=95)
    with Image.open(path) as check:
        assert check.getexif().get(0x0112) == orientation
        assert check.size == (120, 60)  # stored landscape
    out = load_image(path)
    top, bottom, left, right = bbox(out)
    if portrait:
        assert (top, bottom) == (0, 27), "displayed portrait: the bar must be vertical"
        assert right - left < 20
    else:
        assert (left, right) == (0, 27), "displayed landscape: the bar must be horizontal"
        assert bottom - top < 20
    assert empty_quarter(out) == empty


def test_without_exif_the_stored_orientation_is_kept(tmp_path):
    out = load_image(save(l_shape(), tmp_path / "photo.jpg", quality=95))
    top, bottom, left, right = bbox(out)
    assert (left, right) == (0, 27) and bottom - top < 20
    assert empty_quarter(out) == "bottom-right"


def tall_bar() -> Image.Image:
    img = Image.new("L", (64, 64), WHITE)
    ImageDraw.Draw(img).rectangle((26, 4, 37, 59), fill=0)
    return img


def wide_bar() -> Image.Image:
    return tall_bar().transpose(Image.Transpose.ROTATE_90)


@pytest.mark.parametrize("first_is_tall", [True, False])
def test_animated_gif_uses_first_frame(tmp_path, first_is_tall):
    frames = [tall_bar(), wide_bar()] if first_is_tall else [wide_bar(), tall_bar()]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 2
    out = load_image(path)
    if first_is_tall:
        assert_tall_and_centred(out)
    else:
        assert_wide_and_centred(out)


def test_animated_webp_uses_first_frame(tmp_path):
    from PIL import features

    if not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    path = tmp_path / "anim.webp"
    tall_bar().convert("RGB").save(
        path, save_all=True, append_images=[wide_bar().convert("RGB")], lossless=True
    )
    with Image.open(path) as check:
        assert check.n_frames == 2
    assert_tall_and_centred(load_image(path))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.full((100, 60), 60000, dtype=np.uint16)  # light grey background
    a[10:90, 20:40] = 20000  # darker object: 20000 / 257 = 77.8 -> 78 -> inverted 177
    path = save(Image.fromarray(a), tmp_path / "deep.png")
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # really read as 16 bit
    out = load_image(path)
    # Clipping to 255 would turn everything white and leave a black output.
    assert 174 <= out.max() <= 180
    assert_tall_and_centred(out)


def test_palette_png_with_transparency(tmp_path):
    img = Image.new("P", (40, 80), 0)
    img.putpalette([0, 0, 0, 50, 50, 50] + [0] * 762)
    ImageDraw.Draw(img).rectangle((15, 5, 24, 74), fill=1)
    path = save(img, tmp_path / "pal.png", transparency=0)  # index 0 (black) transparent
    out = load_image(path)
    assert out[0, 0] == 0 and out.max() >= 180
    assert_tall_and_centred(out)


# --------------------------------------------------------------------------- bad input


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 20)
    with pytest.raises(ImageInputError, match=r"notes\.png") as info:
        load_image(path)
    assert "\n" not in str(info.value)
    assert "not an image" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageInputError, match=r"empty\.png.*empty"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageInputError, match=r"nothere\.jpg: no such file"):
        load_image(tmp_path / "nothere.jpg")


def test_directory(tmp_path):
    with pytest.raises(ImageInputError, match="directory"):
        load_image(tmp_path)


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(200, 200, 3), dtype=np.uint8)  # does not compress
    full = save(Image.fromarray(noise), tmp_path / "full.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageInputError, match=r"cut\.png.*truncated or corrupt") as info:
        load_image(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "dims",
    [
        (30, 30),  # 900 pixels: over twice the limit, Pillow raises DecompressionBombError
        (15, 10),  # 150 pixels: between the limit and twice it, Pillow would only warn
    ],
)
def test_over_pixel_limit(tmp_path, monkeypatch, dims):
    path = save(Image.new("L", dims, WHITE), tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageInputError, match=r"huge\.png.*too large to decode"):
        load_image(path)
    # the warning filter is restored afterwards
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if dims == (15, 10):
            Image.open(path).close()
            assert any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert load_image(path).shape == (28, 28)


def test_file_over_size_limit(tmp_path, monkeypatch):
    path = save(trouser(), tmp_path / "big.png")
    assert path.stat().st_size > 100
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImageInputError, match=r"big\.png.*too large"):
        load_image(path)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 50 * 1024 * 1024)
    assert load_image(path).shape == (28, 28)


def test_max_file_bytes_default():
    assert images.MAX_FILE_BYTES == 50 * 1024 * 1024


def test_image_input_error_is_a_value_error():
    assert issubclass(ImageInputError, ValueError)


def test_invalid_invert_value(tmp_path):
    path = save(trouser(), tmp_path / "trouser.png")
    with pytest.raises(ValueError, match=r"auto.*always.*never") as info:
        load_image(path, invert="yes")
    assert "'yes'" in str(info.value)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_invalid_size(tmp_path, size):
    with pytest.raises(ValueError, match="size"):
        load_image(save(trouser(), tmp_path / "trouser.png"), size=size)


# --------------------------------------------------------------------------- to_tensor


def test_to_tensor():
    a = np.zeros((28, 28), dtype=np.uint8)
    b = np.full((28, 28), 255, dtype=np.uint8)
    b[0, 0] = 51
    x = to_tensor([a, b])
    assert x.shape == (2, 1, 28, 28)
    assert x.dtype == torch.float32
    assert x[0].max().item() == 0.0
    assert x[1, 0, 1, 1].item() == 1.0
    assert x[1, 0, 0, 0].item() == pytest.approx(0.2)


def test_to_tensor_of_loaded_images(tmp_path):
    path = save(trouser(), tmp_path / "trouser.png")
    img = load_image(path)
    x = to_tensor([img])
    torch.testing.assert_close(x[0, 0], torch.from_numpy(img).float() / 255)


def test_to_tensor_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        to_tensor([])
    with pytest.raises(ValueError, match="same shape"):
        to_tensor([np.zeros((28, 28), np.uint8), np.zeros((14, 14), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        to_tensor([np.zeros((28, 28), np.float32)])


def test_eps_is_refused_without_running_ghostscript(tmp_path, monkeypatch):
    """PostScript is a program: decoding it would run Ghostscript on the file."""
    path = tmp_path / "drawing.eps"
    path.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nnewpath 0 0 moveto "
                    "28 28 lineto stroke showpage\n%%EOF\n")
    from PIL import EpsImagePlugin

    def never(*args, **kwargs):
        raise AssertionError("Ghostscript was started")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", never, raising=False)
    with pytest.raises(ImageInputError, match="drawing.eps: EPS/PostScript files are not "
                                              "accepted; save it as PNG or JPEG"):
        load_image(path)
