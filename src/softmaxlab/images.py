"""Turn a photo of your own into the 28x28 image a Fashion-MNIST model expects.

Fashion-MNIST was made from product photos of Zalando articles: a dark(ish) product on a white
background was trimmed to the product, scaled so that its longest edge is 28 pixels, centred on a
28x28 canvas, negated and converted to 8-bit grayscale. The result is a *light* object on a
*black* background, touching two opposite edges of the image. A model trained on that data
expects exactly this framing, so a photo must go through the same steps before classifying it.

:func:`load_image` does those steps for any file Pillow can read (PNG, JPEG, GIF, WebP, BMP,
TIFF, ...):

1. **Checks.** The file must exist, be a regular file, be non-empty and at most
   :data:`MAX_FILE_BYTES`; Pillow must recognise and fully decode it; its pixel count must stay
   under Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``; the
   ``DecompressionBombWarning`` is turned into an error, so a huge image is refused instead of
   being decoded). Each problem raises :class:`ImageInputError` with a one-line message.
2. **Frame and orientation.** Animated GIF/WebP files use their first frame; the EXIF
   orientation tag of camera photos is applied (a corrupt EXIF block is ignored).
3. **Grayscale.** Transparent pixels are composited onto white (a cut-out product on a
   transparent background is treated like a product on white); colour becomes luma (ITU-R
   601-2, Pillow's ``"L"``); 16-bit grayscale is scaled to 8 bits (``v / 257``), not clipped.
4. **Inversion** (``invert``). ``"auto"`` inverts when the *median* of the outermost one-pixel
   frame is above 127, i.e. when the background is light. The median, not the mean, so that a
   product touching part of the border does not flip the decision.
5. **Trimming** (``trim``). The background level is the median of the border after inversion;
   the object is every pixel above ``background + max(10% of (peak - background), 8)``. Relative
   to the peak, so a faint object still counts; at least 8 grey levels, so JPEG noise near a
   blank background does not. The image is cropped to the bounding box of the object; an image
   with no object pixel (blank, uniform) is kept whole.
6. **Scaling and centring.** The longest side is resized (Lanczos, up or down) to ``size`` with
   the aspect ratio kept, and the result is pasted in the middle of a black ``size`` x ``size``
   canvas.

Not reproduced from the Fashion-MNIST pipeline: its light Gaussian sharpening after resizing.

:func:`to_tensor` stacks such images into the float32 ``(N, 1, H, W)`` batch in ``[0, 1]`` the
models take, the same ``x / 255`` as :meth:`softmaxlab.data.datasets.ImageDataset.to_float`.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ConfigError, ImageInputError

__all__ = ["INVERT_CHOICES", "MAX_FILE_BYTES", "ImageInputError", "load_image", "to_tensor"]

#: Largest file :func:`load_image` accepts, in bytes (checked before decoding).
MAX_FILE_BYTES = 50 * 1024 * 1024

#: Allowed values of ``load_image(invert=...)``.
INVERT_CHOICES = ("auto", "always", "never")

#: ``invert="auto"`` inverts when the median of the outermost pixel frame is above this level.
BORDER_LIGHT_LEVEL = 127

#: Trimming: object pixels lie this fraction of (peak - background) above the background ...
TRIM_FRACTION = 0.10
#: ... and at least this many grey levels above it (so JPEG noise is not an object).
TRIM_MIN_LEVELS = 8

# Errors Pillow's decoders raise on damaged data (truncated files, broken chunks, bad headers);
# beyond the documented ones, the AVIF decoder raises RuntimeError and a TIFF tag of the wrong
# type (a rational where a count belongs) TypeError.
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, RuntimeError, TypeError
)

_SUPPORTED_HINT = "save it as PNG or JPEG"

# Pillow modes that carry an alpha channel.
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def _fail(path: str | os.PathLike, problem: str) -> ImageInputError:
    """Build the one-line error ``"<path>: <problem>"``."""
    text = f"{os.fspath(path)}: {problem}"
    return ImageInputError(" ".join(text.split()))


# --------------------------------------------------------------------------- reading


def _check_file(path: Path) -> None:
    """The checks that need no decoding: existence, kind, and size of the file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as e:
        raise _fail(path, f"cannot access the file ({e.strerror or e})") from None
    if path.is_dir():
        raise _fail(path, "is a directory, not an image file")
    if not path.is_file():
        raise _fail(path, "is not a regular file")
    if st.st_size == 0:
        raise _fail(path, "the file is empty (0 bytes)")
    limit = MAX_FILE_BYTES
    if st.st_size > limit:
        raise _fail(
            path,
            f"the file is too large ({_megabytes(st.st_size)}, limit {_megabytes(limit)}); "
            "shrink or re-save the photo",
        )


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n} bytes"


def _open_first_frame(path: Path) -> Image.Image:
    """Open, take frame 0, decode fully; every failure becomes :class:`ImageInputError`."""
    with warnings.catch_warnings():
        # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except UnidentifiedImageError:
            raise _fail(path, f"not an image format Pillow can read; {_SUPPORTED_HINT}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _fail(path, _bomb_message()) from None
        except PermissionError:
            raise _fail(path, "permission denied") from None
        except _DECODE_ERRORS as e:
            raise _fail(
                path, f"cannot read the image, the file is truncated or corrupt ({e})"
            ) from None
        try:
            if img.format == "EPS":
                # Decoding PostScript runs Ghostscript on the file: not for arbitrary inputs.
                raise _fail(path, f"EPS/PostScript files are not accepted; {_SUPPORTED_HINT}")
            w, h = img.size
            if w == 0 or h == 0:
                raise _fail(path, f"the image has no pixels ({w}x{h})")
            img.seek(0)
            img.load()
        except ImageInputError:
            img.close()
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            img.close()
            raise _fail(path, _bomb_message(img.size)) from None
        except _DECODE_ERRORS as e:
            img.close()
            raise _fail(
                path, f"the image data is truncated or corrupt ({e}); re-export the file"
            ) from None
    return img


def _bomb_message(size: tuple[int, int] | None = None) -> str:
    dims = f" ({size[0]}x{size[1]} = {size[0] * size[1]} pixels)" if size else ""
    return (
        f"the image is too large to decode{dims}, over Pillow's limit of "
        f"{Image.MAX_IMAGE_PIXELS} pixels; scale the photo down first"
    )


# --------------------------------------------------------------------------- grayscale


def _to_gray(img: Image.Image, path: Path) -> np.ndarray:
    """Grayscale uint8 (H, W) array; transparency composited onto white, 16 bit scaled to 8."""
    mode = img.mode
    if mode.startswith("I;16"):
        a = np.asarray(img).astype(np.float64)
        return np.rint(a / 257.0).astype(np.uint8)
    if mode == "I":
        # 32-bit integers: 16-bit PNGs/TIFFs often open like this. Values beyond 255 mean a
        # 16-bit range (scaled down); otherwise the values are already 8-bit levels.
        a = np.asarray(img).astype(np.float64)
        if a.size and a.max() > 255:
            a = np.clip(a, 0, 65535) / 257.0
        return np.rint(np.clip(a, 0, 255)).astype(np.uint8)
    if mode == "F":
        # Floating point: [0, 1] data is scaled to [0, 255]; anything else is clipped to it.
        a = np.asarray(img).astype(np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            a = a * 255.0
        return np.rint(np.clip(a, 0, 255)).astype(np.uint8)
    try:
        if mode in _ALPHA_MODES or "transparency" in img.info:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            gray = Image.alpha_composite(white, rgba).convert("L")
        elif mode == "LAB":
            gray = img.getchannel("L")  # CIE lightness; Pillow cannot convert LAB to RGB
        else:
            gray = img.convert("L")
    except (ValueError, OSError) as e:
        raise _fail(path, f"unsupported colour mode {mode!r} ({e}); {_SUPPORTED_HINT}") from None
    return np.asarray(gray, dtype=np.uint8).copy()


# --------------------------------------------------------------------------- framing


def _border(a: np.ndarray) -> np.ndarray:
    """The outermost one-pixel frame of a 2-D array, as a flat array."""
    if a.shape[0] <= 2 or a.shape[1] <= 2:
        return a.ravel()
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def _should_invert(gray: np.ndarray, invert: str) -> bool:
    if invert == "always":
        return True
    if invert == "never":
        return False
    return float(np.median(_border(gray))) > BORDER_LIGHT_LEVEL


def _trim(a: np.ndarray) -> np.ndarray:
    """Crop to the bounding box of the pixels clearly above the background level."""
    background = float(np.median(_border(a)))
    peak = float(a.max())
    threshold = background + max(TRIM_FRACTION * (peak - background), TRIM_MIN_LEVELS)
    rows = np.flatnonzero((a > threshold).any(axis=1))
    if rows.size == 0:
        return a  # nothing stands out: keep the whole image
    cols = np.flatnonzero((a > threshold).any(axis=0))
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _fit(a: np.ndarray, size: int) -> np.ndarray:
    """Scale the longest side to ``size`` (aspect kept) and centre on a black square."""
    h, w = a.shape
    scale = size / max(h, w)
    new_w = min(size, max(1, round(w * scale)))
    new_h = min(size, max(1, round(h * scale)))
    img = Image.fromarray(a)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(img, ((size - new_w) // 2, (size - new_h) // 2))
    return np.asarray(canvas, dtype=np.uint8).copy()


# --------------------------------------------------------------------------- public API


def load_image(
    path: str | os.PathLike,
    invert: str = "auto",
    trim: bool = True,
    size: int = 28,
) -> np.ndarray:
    """Read an image file as a Fashion-MNIST-style ``(size, size)`` uint8 array.

    The result shows a light object on black, trimmed to the object, its longest side scaled to
    ``size`` and centred (see the module docstring for every step and threshold).

    Args:
        path: the image file (any format Pillow reads: PNG, JPEG, GIF, WebP, BMP, TIFF, ...).
        invert: ``"auto"`` (invert when the median of the outermost pixel frame is above 127,
            i.e. the background is light), ``"always"`` or ``"never"``.
        trim: crop to the object's bounding box before scaling (kept whole if nothing stands
            out from the background).
        size: side of the square output, in pixels.

    Returns:
        numpy uint8 array of shape ``(size, size)``.

    Raises:
        ValueError: ``invert`` or ``size`` is not valid.
        ImageInputError: the file is missing, empty, too large, not an image, corrupt, or over
            Pillow's pixel limit (one-line message naming the file).
    """
    if invert not in INVERT_CHOICES:
        raise ConfigError(
            f"invert={invert!r} is not allowed; use one of {', '.join(INVERT_CHOICES)}"
        )
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"size must be a positive integer, got {size!r}")
    size = int(size)

    p = Path(path)
    _check_file(p)
    img = _open_first_frame(p)
    try:
        try:
            oriented = ImageOps.exif_transpose(img)
        except (*_DECODE_ERRORS, KeyError, AttributeError):
            oriented = None  # unreadable EXIF: keep the pixels as stored
        gray = _to_gray(oriented if oriented is not None else img, p)
    finally:
        img.close()

    if _should_invert(gray, invert):
        gray = 255 - gray
    if trim:
        gray = _trim(gray)
    return _fit(gray, size)


def to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack uint8 images (as from :func:`load_image`) into float32 ``(N, 1, H, W)`` in [0, 1].

    Each value becomes ``x / 255``, the scaling the models were trained with.

    Raises:
        ValueError: no images, an image that is not 2-D uint8, or images of different shapes.
    """
    arrays = list(images)
    if not arrays:
        raise ValueError("to_tensor needs at least one image")
    first = np.asarray(arrays[0])
    for i, arr in enumerate(arrays):
        arr = np.asarray(arr)
        if arr.dtype != np.uint8 or arr.ndim != 2:
            raise ValueError(
                f"image {i} must be a 2-D uint8 array (as load_image returns), "
                f"got dtype {arr.dtype} and shape {arr.shape}"
            )
        if arr.shape != first.shape:
            raise ValueError(
                f"all images must have the same shape; image 0 is {first.shape}, "
                f"image {i} is {arr.shape}"
            )
    batch = torch.from_numpy(np.stack([np.asarray(a) for a in arrays]))
    return batch.unsqueeze(1).to(torch.float32).div_(255.0)
