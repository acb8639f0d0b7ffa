"""Fuzzing load_image: whatever a file holds, the result is a uint8 (28, 28) array or an
ImageInputError naming the file; never any other exception.

The seeds are small valid files Pillow writes (PNG, JPEG, GIF, BMP, WebP, TIFF, AVIF); the fuzzers
feed random bytes, truncations, mutated bytes and headers declaring huge sizes. Deterministic
(``derandomize``, no example database) and bounded.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, features

from softmaxlab.images import ImageInputError, load_image

# Pillow warns about the damage it works around (corrupt EXIF, short reads); expected here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

# Pillow's own pixel limit, kept before the fixture below lowers it
PILLOW_LIMIT = Image.MAX_IMAGE_PIXELS
# the limit while fuzzing: a declared size beyond it takes the decompression-bomb path as one
# beyond Pillow's ~89M pixels does, and one below it allocates a few MB, not hundreds
FUZZ_LIMIT = 1 << 20


def fuzz(max_examples: int):
    """Hypothesis settings for this file: reproducible, no database, bounded."""
    return settings(derandomize=True, deadline=None, database=None, max_examples=max_examples,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def fuzz_pixel_limit():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Image, "MAX_IMAGE_PIXELS", FUZZ_LIMIT)
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One folder for the module (hypothesis refuses function-scoped fixtures like tmp_path)."""
    return tmp_path_factory.mktemp("fuzz_images")


def check(path: Path) -> np.ndarray | None:
    """load_image(path): a (28, 28) uint8 array (returned) or an ImageInputError (None) whose
    one-line message names the file; any other exception fails the test."""
    try:
        out = load_image(path)
    except ImageInputError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
        return None
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    return out


def write(folder: Path, data: bytes, suffix: str = ".png") -> Path:
    path = folder / f"fuzz{suffix}"
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- seeds


def _picture() -> Image.Image:
    """A 24x16 RGBA picture: a dark shape on white, a transparent corner, some noise."""
    rgb = np.random.default_rng(0).integers(200, 256, (16, 24, 3), dtype=np.uint8)
    img = Image.fromarray(rgb).convert("RGBA")
    ImageDraw.Draw(img).rectangle((6, 3, 15, 12), fill=(40, 20, 60, 255))
    img.putpixel((0, 0), (255, 255, 255, 0))
    return img


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    """Small valid files of each format and of the modes load_image treats differently."""
    img = _picture()
    rgb = img.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotated 90 degrees
    frames = [rgb.rotate(90, expand=True).resize(rgb.size), rgb]
    seeds = {
        "png-L": _save(img.convert("L"), "PNG"),
        "png-RGBA": _save(img, "PNG"),
        "png-P-transparency": _save(rgb.convert("P"), "PNG", transparency=3),
        "png-I16": _save(Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257),
                         "PNG"),
        "png-animated": _save(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "jpeg-RGB-exif": _save(rgb, "JPEG", exif=exif),
        "jpeg-L": _save(img.convert("L"), "JPEG"),
        "gif-animated": _save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "bmp-RGB": _save(rgb, "BMP"),
        "bmp-P": _save(rgb.convert("P"), "BMP"),
        "webp-lossy": _save(rgb, "WEBP"),
        "webp-lossless-RGBA": _save(img, "WEBP", lossless=True),
        "webp-animated": _save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "tiff-RGB": _save(rgb, "TIFF"),
        "tiff-deflate-L": _save(img.convert("L"), "TIFF", compression="tiff_adobe_deflate"),
    }
    if features.check("avif"):
        seeds["avif"] = _save(rgb, "AVIF")
    return seeds


SEEDS = _seeds()


def test_seeds_load(folder):
    """Every seed is a valid image: the fuzzers start from files load_image accepts."""
    for name, data in SEEDS.items():
        assert check(write(folder, data)) is not None, name


# --------------------------------------------------------------------------- random bytes

# the first bytes of each format Pillow identifies, so random bytes behind them reach a decoder
MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBPVP8 ",
          b"II*\0", b"MM\0*", b"\0\0\0\x1cftypavif", b"P6\n", b"\0\0\1\0"]


@fuzz(600)
@given(magic=st.one_of(st.just(b""), st.sampled_from(MAGICS)), data=st.binary(max_size=300))
def test_random_bytes(folder, magic, data):
    check(write(folder, magic + data))


# --------------------------------------------------------------------------- truncations


@fuzz(800)
@given(name=st.sampled_from(list(SEEDS)), data=st.data())
def test_truncations(folder, name, data):
    """Cut anywhere, mostly in the first 100 bytes where the headers are."""
    seed = SEEDS[name]
    cut = data.draw(st.one_of(st.integers(1, min(100, len(seed) - 1)),
                              st.integers(1, len(seed) - 1)))
    check(write(folder, seed[:cut]))


# --------------------------------------------------------------------------- mutated bytes


def _fix_png_crcs(data: bytearray) -> bytearray:
    """Recompute the CRC of each PNG chunk still whole, so a mutation reaches the chunk's parser
    instead of failing its checksum."""
    pos = 8
    while pos + 12 <= len(data):
        end = pos + 8 + int.from_bytes(data[pos : pos + 4], "big")
        if end + 4 > len(data):
            break
        data[end : end + 4] = zlib.crc32(data[pos + 4 : end]).to_bytes(4, "big")
        pos = end + 4
    return data


@fuzz(2000)
@given(name=st.sampled_from(list(SEEDS)), fix_crcs=st.booleans(), data=st.data())
def test_mutated_bytes(folder, name, fix_crcs, data):
    """1 to 4 bytes overwritten or bit-flipped, mostly in the first 64 bytes (headers, PNG's
    IHDR, BMP's info header, ...); PNG chunks' CRCs recomputed or not."""
    content = bytearray(SEEDS[name])
    positions = st.one_of(st.integers(0, min(63, len(content) - 1)),
                          st.integers(0, len(content) - 1))
    changes = st.tuples(positions, st.integers(0, 255), st.booleans())
    for pos, value, flip in data.draw(st.lists(changes, min_size=1, max_size=4)):
        content[pos] = content[pos] ^ (1 << value % 8) if flip else value
    if fix_crcs and name.startswith("png"):
        content = _fix_png_crcs(content)
    check(write(folder, bytes(content)))


# --------------------------------------------------------------------------- declared sizes


def _with_size(fmt: str, width: int, height: int) -> bytes:
    """The seed of ``fmt`` with its header declaring ``width`` x ``height`` (pixels unchanged)."""
    if fmt == "png":
        data = bytearray(SEEDS["png-L"])
        data[16:24] = struct.pack(">II", width, height)  # IHDR, CRC recomputed
        return bytes(_fix_png_crcs(data))
    if fmt == "gif":
        data = bytearray(SEEDS["gif-animated"])
        data[6:10] = struct.pack("<HH", width, height)  # the logical screen
        frame = _gif_first_frame(data)
        data[frame + 5 : frame + 9] = struct.pack("<HH", width, height)  # the first frame's
        return bytes(data)
    if fmt == "bmp":
        data = bytearray(SEEDS["bmp-RGB"])
        data[18:26] = struct.pack("<ii", width, height)  # negative height: top-down rows
        return bytes(data)
    if fmt == "jpeg":
        data = bytearray(SEEDS["jpeg-L"])
        sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
        return bytes(data)
    assert fmt == "webp"
    data = bytearray(SEEDS["webp-lossy"])
    data[26:30] = struct.pack("<HH", width, height)  # VP8 key frame: 14 bits and a 2-bit scale
    return bytes(data)


def _gif_first_frame(data: bytearray) -> int:
    """Offset of a GIF's first image descriptor (after the colour table and extensions)."""
    pos = 13 + (3 << (data[10] & 7) + 1 if data[10] & 0x80 else 0)
    while data[pos] == 0x21:  # an extension: its label, then sub-blocks up to a zero length
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C
    return pos


# the widest size each header field can hold, and its smallest (BMP's is a signed int32)
FIELDS = {"png": (0, 2**32 - 1), "gif": (0, 2**16 - 1), "bmp": (-(2**31), 2**31 - 1),
          "jpeg": (0, 2**16 - 1), "webp": (0, 2**14 - 1)}


def test_size_helper_sets_the_size_pillow_reads():
    for fmt in FIELDS:
        with Image.open(io.BytesIO(_with_size(fmt, 20, 30))) as img:
            assert img.size == (20, 30), fmt


@fuzz(600)
@given(fmt=st.sampled_from(list(FIELDS)), data=st.data())
def test_declared_sizes(folder, fmt, data):
    """Any size the header can declare, small, mismatched, or far beyond the pixel limit."""
    low, high = FIELDS[fmt]
    size = st.one_of(st.integers(0, 64), st.integers(1000, 2000), st.integers(low, high),
                     st.sampled_from([low, high, FUZZ_LIMIT, FUZZ_LIMIT + 1]).filter(
                         lambda n: low <= n <= high))
    width, height = data.draw(size), data.draw(size)
    check(write(folder, _with_size(fmt, width, height)))


@pytest.mark.parametrize("fmt", list(FIELDS))
def test_decompression_bomb_headers_are_refused_before_decoding(folder, monkeypatch, fmt):
    """A tiny file declaring the largest size its header holds, with Pillow's real limit: a
    clear error at once (the pixels are never allocated or decoded)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_LIMIT)
    high = FIELDS[fmt][1]
    path = write(folder, _with_size(fmt, high, high))
    start = time.perf_counter()
    with pytest.raises(ImageInputError, match="too large to decode") as err:
        load_image(path)
    assert time.perf_counter() - start < 1
    assert str(err.value).startswith(f"{path}: ")


# --------------------------------------------------------------------------- escapes found


def _tiff_with_rational_strip_offsets() -> bytes:
    """The TIFF seed with its StripOffsets tag typed RATIONAL: Pillow raises TypeError."""
    data = bytearray(SEEDS["tiff-RGB"])
    assert data[:4] == b"II*\0"
    ifd = int.from_bytes(data[4:8], "little")
    for i in range(int.from_bytes(data[ifd : ifd + 2], "little")):
        entry = ifd + 2 + 12 * i
        if int.from_bytes(data[entry : entry + 2], "little") == 273:  # StripOffsets
            data[entry + 2 : entry + 4] = (5).to_bytes(2, "little")  # RATIONAL
    return bytes(data)


def _avif_without_primary_item() -> bytes:
    """The AVIF seed naming a primary item it lacks: Pillow raises RuntimeError on opening it."""
    data = SEEDS["avif"]
    pitm = data.index(b"pitm") + 8  # box type, version and flags, then the 16-bit item id
    return data[:pitm] + b"\xff\xff" + data[pitm + 2 :]


def _avif_with_zeroed_data() -> bytes:
    """The AVIF seed with its coded data zeroed: Pillow raises RuntimeError on decoding it."""
    data = SEEDS["avif"]
    mdat = data.index(b"mdat") + 4
    return data[:mdat] + bytes(len(data) - mdat)


ESCAPES = {
    "tiff-rational-tag.tif": _tiff_with_rational_strip_offsets,
    "avif-no-primary-item.avif": _avif_without_primary_item,
    "avif-zeroed-data.avif": _avif_with_zeroed_data,
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_decoder_errors_outside_pillows_documented_ones(folder, name):
    """Files whose decoding raised RuntimeError or TypeError out of load_image before."""
    if name.startswith("avif") and "avif" not in SEEDS:
        pytest.skip("this Pillow has no AVIF support")
    path = write(folder, ESCAPES[name](), suffix=name)
    with pytest.raises(ImageInputError, match="truncated or corrupt") as err:
        load_image(path)
    assert str(err.value).startswith(f"{path}: ")
