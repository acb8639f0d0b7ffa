"""Encoded images (files in a folder, or bytes in a Parquet column) decoded into uint8 arrays.

Each image goes through the steps of :func:`softmaxlab.images.load_image` — the photo pipeline
``softmaxlab predict`` uses — so a model trained on a folder sees its photos the way it saw its
training images: first frame, EXIF orientation, grayscale (transparency onto white, ITU-R 601-2
luma, 16 bit scaled to 8), then inversion (``invert``) and trimming (``trim``) if asked for,
then the longest side scaled to ``size`` and centred on a black ``size`` x ``size`` square. An
image that already is ``size`` x ``size`` grayscale is kept exactly (no resampling): a PNG folder
of 28x28 images loads losslessly.

Decoding a small image is mostly Python work in Pillow (a 28x28 PNG takes about 0.1 ms), so
threads do not help (they share the GIL); large batches are decoded in forked worker processes
(:data:`PARALLEL_MIN` images or more, and more than one core). The workers read the files
themselves and return each file's sha256 beside its pixels, so the checksum of a folder costs no
second pass over it.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageInputError

# MAX_FILE_BYTES, the decoders' errors and the pixel steps of the photo pipeline: training images
# and predict's photos are prepared by the very same code (images.py owns it)
from ..images import (
    _DECODE_ERRORS,
    MAX_FILE_BYTES,
    _fit,
    _should_invert,
    _to_gray,
    _trim,
)

# File name endings of the images a folder dataset holds (case-insensitive); other files are
# ignored (README, .DS_Store, Thumbs.db, ...).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff",
                    ".pgm", ".ppm", ".pbm", ".pnm")
PARALLEL_MIN = 4000  # decode in worker processes from this many images on (below: start-up costs more)
CHUNK = 500  # images per task of a worker: large enough to amortise pickling, small for the bar


@dataclass(frozen=True)
class Preprocess:
    """How each image becomes a ``size`` x ``size`` uint8 array (see the module docstring)."""

    size: int = 28  # side of the square output, pixels
    invert: str = "never"  # "never" | "auto" (light border -> invert) | "always"
    trim: bool = False  # crop to the object before scaling


@dataclass
class Decoded:
    """The result of :func:`decode_many`.

    images: uint8 (N, size, size), zeros where decoding failed; errors: index -> one-line reason
    (naming the image); digests: each source file's sha256 hex (files only, else None).
    """

    images: np.ndarray
    errors: dict[int, str]
    digests: list[str | None]


def decode_bytes(data: bytes, name: str, prep: Preprocess) -> np.ndarray:
    """One encoded image (PNG, JPEG, ...) as a uint8 ``(prep.size, prep.size)`` array.

    ``name`` is what to call the image in error messages (its file, or "FILE row 17").

    Raises:
        ImageInputError: empty, too large, not an image, corrupt, or over Pillow's pixel limit
            (one line naming ``name``).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return _decode(data, name, prep)


def _decode(data: bytes, name: str, prep: Preprocess) -> np.ndarray:
    """:func:`decode_bytes` without setting the warning filter (the caller has)."""
    if not data:
        raise ImageInputError(f"{name}: the image is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageInputError(f"{name}: the image is too large ({len(data)} bytes, limit "
                              f"{MAX_FILE_BYTES})")
    try:
        img = Image.open(io.BytesIO(data))
        if img.format == "EPS":  # decoding PostScript runs Ghostscript: never on user data
            raise ImageInputError(f"{name}: EPS/PostScript images are not accepted")
        if 0 in img.size:
            raise ImageInputError(f"{name}: the image has no pixels ({img.size[0]}x"
                                  f"{img.size[1]})")
        img.seek(0)
        img.load()
    except UnidentifiedImageError:
        raise ImageInputError(f"{name}: not an image format Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(f"{name}: the image is too large to decode (over Pillow's "
                              f"limit of {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except _DECODE_ERRORS as e:
        raise ImageInputError(f"{name}: cannot decode the image, it is truncated or corrupt "
                              f"({' '.join(str(e).split())})") from None
    try:
        oriented = ImageOps.exif_transpose(img)
    except (*_DECODE_ERRORS, KeyError, AttributeError):
        oriented = None  # unreadable EXIF: keep the pixels as stored
    gray = _to_gray(oriented if oriented is not None else img, name)
    if _should_invert(gray, prep.invert):
        gray = 255 - gray
    if prep.trim:
        gray = _trim(gray)
    if gray.shape != (prep.size, prep.size):  # _fit would only copy an image of the right size
        gray = _fit(gray, prep.size)
    return gray


def _decode_chunk(sources: Sequence[str | bytes], names: Sequence[str], prep: Preprocess
                  ) -> tuple[np.ndarray, dict[int, str], list[str | None]]:
    """Decode a run of images: a str is a file (read and hashed here), bytes an encoded image."""
    out = np.zeros((len(sources), prep.size, prep.size), np.uint8)
    errors: dict[int, str] = {}
    digests: list[str | None] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for i, (source, name) in enumerate(zip(sources, names)):
            digest = None
            try:
                if isinstance(source, str):
                    try:
                        with open(source, "rb") as f:
                            data = f.read(MAX_FILE_BYTES + 1)
                    except OSError as e:
                        raise ImageInputError(f"{name}: cannot read the file "
                                              f"({e.strerror or e})") from None
                    digest = hashlib.sha256(data).hexdigest()
                else:
                    data = source
                out[i] = _decode(data, name, prep)
            except ImageInputError as e:
                errors[i] = str(e)
            digests.append(digest)
    return out, errors, digests


def _worker_count(n: int, workers: int | None) -> int:
    if workers is not None:
        return max(1, workers)
    if n < PARALLEL_MIN or sys.platform != "linux":  # fork is the fast, safe start method there
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, 8)


def decode_many(sources: Sequence[str | bytes], names: Sequence[str], prep: Preprocess,
                progress: bool = False, desc: str = "decoding", workers: int | None = None
                ) -> Decoded:
    """Decode many images (file paths as str, or encoded bytes), in worker processes when it pays.

    Args:
        sources: a str is a file to read (its sha256 is returned), bytes an encoded image.
        names: what to call each image in error messages.
        prep: the size, inversion and trimming.
        progress: show a tqdm bar on stderr.
        workers: worker processes (default: the cores available for
            :data:`PARALLEL_MIN` images or more, else none); 1 decodes in this process.
    Returns:
        a :class:`Decoded`; failures are in ``errors``, never raised.
    """
    from tqdm.auto import tqdm

    n = len(sources)
    images = np.zeros((n, prep.size, prep.size), np.uint8)
    errors: dict[int, str] = {}
    digests: list[str | None] = [None] * n
    starts = range(0, n, CHUNK)
    nworkers = _worker_count(n, workers)
    with tqdm(total=n, unit="img", desc=desc, disable=not progress, leave=False,
              mininterval=0.2) as bar:

        def take(start: int, result) -> None:
            part, errs, digs = result
            images[start:start + len(part)] = part
            errors.update({start + i: msg for i, msg in errs.items()})
            digests[start:start + len(digs)] = digs
            bar.update(len(part))

        if nworkers == 1:
            for s in starts:
                take(s, _decode_chunk(sources[s:s + CHUNK], names[s:s + CHUNK], prep))
        else:
            # fork: the workers start at once (no re-import of torch), as DataLoader's do
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", ".*fork.*", DeprecationWarning)
                context = multiprocessing.get_context("fork")
                pool = ProcessPoolExecutor(nworkers, mp_context=context)
                try:
                    futures = [(s, pool.submit(_decode_chunk, sources[s:s + CHUNK],
                                               names[s:s + CHUNK], prep)) for s in starts]
                    for s, future in futures:
                        take(s, future.result())
                finally:  # on Ctrl-C, drop the chunks not started instead of decoding them all
                    pool.shutdown(wait=True, cancel_futures=True)
    return Decoded(images, errors, digests)


def image_files(folder: str | os.PathLike) -> list[str]:
    """The image files under ``folder`` (recursively; hidden files and folders skipped), as
    paths (str) in a fixed order: each folder's files by name, then its sub-folders by name —
    never the file system's listing order."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, name) for name in sorted(files)
                  if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)]
    return found
