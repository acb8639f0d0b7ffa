"""Readers for the user's own data files: IDX folders, CSV, NumPy (.npz, .npy), Parquet, image folders.

Each reader turns one path into a :class:`Source`: its training part, its test part when the data
holds one (IDX's ``t10k-*`` files, an npz's ``x_test``/``y_test``, a folder's ``test/``), the class
names when the data gives them (folder names, Hugging Face metadata), and a checksum of exactly
the files it read. :mod:`softmaxlab.data.userdata` puts sources together into train and test
splits; this module knows the formats and nothing about splits or runs.

Every problem with the data raises :class:`~softmaxlab.errors.DataError` with one line naming the
file and the line, row, array element or image: ``train.csv line 17: 786 values, expected 785 =
1 label + 784 pixels``. Images are uint8 (N, H, W) with 0 the background, labels int64 (N,).

Layouts:

- ``idx``: a folder with ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (``.gz`` or
  raw) and optionally ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (both or neither):
  uint8 images (N, H, W), integer labels (N,). No md5 is required.
- ``csv``: Kaggle's layout: a header row ``label,pixel1,...,pixelN`` then one row per image, the
  label then N integer pixels 0-255 (row-major); N is a square number, or ``image_shape`` says
  how the N values form an image. Blank lines are skipped; ``.csv.gz`` is read too. Parsed by
  numpy's C reader (``numpy.loadtxt``) a few thousand lines at a time; only a chunk that fails
  is looked at line by line, to name the line.
- ``npz``: arrays ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test`` (as
  ``keras.datasets`` saves them); ``npy``: a folder with those arrays as ``x_train.npy``, ... .
  Images (N, H, W), (N, H, W, 1), (N, 1, H, W), RGB (N, H, W, 3) (converted to gray as Pillow
  does) or flat (N, D); any integer dtype with values 0-255 (or floats holding such integers).
  Labels (N,) or (N, 1) integers. Never unpickled (``allow_pickle=False``).
- ``parquet``: Hugging Face's image datasets: an ``image`` column of ``{bytes, path}`` structs
  (or plain binary) holding encoded images and an integer ``label`` column; other names are
  found through the ``huggingface`` schema metadata (the ``Image`` and ``ClassLabel``
  features), which also gives the class names. Needs pyarrow.
- ``folder``: one sub-folder per class holding image files (searched recursively; class names
  are the folder names, sorted), or ``train/`` and ``test/`` folders each laid out so. Each image
  is decoded, made grayscale and fitted to ``size`` x ``size`` (see
  :mod:`softmaxlab.data.imagefiles`); images that cannot be decoded are skipped and listed
  (``strict`` makes them an error).

Checksums are sha256, written ``sha256:<hex>``: of the file for a single file; for a folder, of
the sorted lines ``<relative path>\\t<sha256 of the file>`` of the files read. Content, not sizes
and times: a copied folder (new mtimes) is the same data, and an edited image of the same size is
not. It costs little: a folder's files are hashed by the workers that decode them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .idx import IDXError, is_gzip, parse_idx, read_bytes
from .imagefiles import IMAGE_EXTENSIONS, Decoded, Preprocess, decode_many, image_files
from .rows import idx_shape, map_idx, map_npy, part_of, read_idx_rows
from .sources import file_in
from .specs import FASHION_MNIST

MAX_CLASSES = 10_000  # labels must be below this (a larger one is a damaged or wrong column)
CSV_CHUNK = 4096  # CSV lines parsed per numpy call
HASH_BLOCK = 1 << 20  # bytes hashed at a time
MAX_SKIPPED_LISTED = 100  # undecodable images named in the record (all are counted)
IDX_NAMES = FASHION_MNIST.files  # role -> the standard IDX file name (without .gz)
ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
_INT = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)  # what numpy.loadtxt reads as an integer
_PIXEL_NAME = re.compile(r"pixel(\d+)", re.IGNORECASE)


# --------------------------------------------------------------------------- what a reader gives


@dataclass
class Part:
    """One split as read: uint8 images (N, H, W), int64 labels (N,), and ``where(i)``, what to
    call example i in a message (``"train.csv line 17"``, ``"data.npz x_test[3]"``, a file)."""

    images: np.ndarray
    labels: np.ndarray
    where: Callable[[int], str]

    def take(self, index: np.ndarray) -> Part:
        """The examples at ``index`` (sorted int indices), still named as in the file."""
        return Part(self.images[index], self.labels[index], lambda i: self.where(int(index[i])))


@dataclass
class Source:
    """What one path holds. ``test`` is None when it holds a single split; ``class_names`` is
    None unless the data names its classes; ``checksum`` covers the ``files`` files read;
    ``skipped``: one line per image that could not be decoded (at most MAX_SKIPPED_LISTED),
    ``n_skipped`` all of them."""

    kind: str
    path: Path
    train: Part
    test: Part | None
    class_names: tuple[str, ...] | None
    checksum: str
    files: int
    skipped: list[str] = field(default_factory=list)
    n_skipped: int = 0
    # when ``train`` holds only a share of the rows (ReadOptions.part): the labels of them all
    all_train_labels: np.ndarray | None = None


@dataclass(frozen=True)
class ReadOptions:
    """What the readers need from the data options: ``image_shape`` for flat rows (CSV, flat
    arrays), ``prep`` for encoded images (folders, Parquet), ``strict``, ``progress``, and
    ``want_test``: read the path's own test split (False when ``--test-data`` replaces it);
    ``part`` (rank, world_size): keep only that share of the training rows (``rows.part_of``),
    read without holding the others where the format allows it (IDX, .npy, Parquet)."""

    image_shape: tuple[int, int] | None = None
    prep: Preprocess = field(default_factory=Preprocess)
    strict: bool = False
    progress: bool = False
    want_test: bool = True
    part: tuple[int, int] | None = None


# --------------------------------------------------------------------------- checksums


def file_digest(path: str | os.PathLike) -> str:
    """The sha256 hex of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _file_digests(paths: list[str], chunk: int = 1000) -> list[str]:
    """The sha256 hex of each file; threads take runs of files (reads and sha256 drop the GIL,
    and a run costs one task, not one per small file)."""

    def run(part: list[str]) -> list[str]:
        return [file_digest(p) for p in part]

    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = pool.map(run, [paths[i:i + chunk] for i in range(0, len(paths), chunk)])
        return [d for part in runs for d in part]


def tree_digest(entries: Sequence[tuple[str, str]]) -> str:
    """``sha256:`` + the sha256 of the sorted ``"<relative path>\\t<file sha256>\\n"`` lines."""
    h = hashlib.sha256()
    for name, digest in sorted(entries):
        h.update(f"{name}\t{digest}\n".encode())
    return f"sha256:{h.hexdigest()}"


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None


# --------------------------------------------------------------------------- shared checks


def _check_labels(labels: np.ndarray, where: Callable[[int], str],
                  num_classes: int | None = None, names_from: str = "") -> None:
    """Labels must be class indices: >= 0, below ``num_classes`` (when the data names its
    classes) and below MAX_CLASSES."""
    if not len(labels):
        return
    limit = num_classes if num_classes is not None else MAX_CLASSES
    bad = np.flatnonzero((labels < 0) | (labels >= limit))
    if not len(bad):
        return
    i = int(bad[0])
    v = int(labels[i])
    if v < 0:
        raise DataError(f"{where(i)}: label {v} is negative; labels are class indices 0, 1, ...")
    if num_classes is not None:
        raise DataError(f"{where(i)}: label {v} is outside the {num_classes} classes "
                        f"{names_from} names (labels 0 to {num_classes - 1})")
    raise DataError(f"{where(i)}: label {v} is too large: softmaxlab takes at most {MAX_CLASSES} "
                    f"classes (labels 0 to {MAX_CLASSES - 1}); is it the right column?")


def _square(n: int) -> tuple[int, int] | None:
    r = math.isqrt(n)
    return (r, r) if r * r == n else None


def _luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> uint8 gray, exactly as Pillow's ``convert("L")`` (ITU-R 601-2)."""
    r, g, b = (rgb[..., k].astype(np.uint32) for k in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _as_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    """Integer (or integral float) pixel values 0-255 as uint8; DataError naming ``what``."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "iuf" or arr.dtype == np.bool_:
        raise DataError(f"{what} has dtype {arr.dtype}; pixels must be integers 0-255 (uint8)")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if arr.dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi)
                                          and (arr == np.round(arr)).all()):
            raise DataError(f"{what} holds fractional {arr.dtype} values (from {lo:g} to "
                            f"{hi:g}); save the pixels as uint8 0-255, e.g. "
                            "(x * 255).round().astype('uint8') for values in [0, 1]")
        if lo < 0 or hi > 255:
            i = int(np.flatnonzero(((arr < 0) | (arr > 255)).reshape(len(arr), -1).any(1))[0])
            raise DataError(f"{what}[{i}] has a pixel outside 0-255 (the values run from {lo:g} "
                            f"to {hi:g}); pixels must be 0-255")
    return arr.astype(np.uint8)


def _as_images(arr: np.ndarray, what: str, image_shape: tuple[int, int] | None) -> np.ndarray:
    """An image array in one of the accepted layouts (see the module docstring) as uint8
    (N, H, W)."""
    shape = arr.shape
    if arr.ndim == 4 and shape[-1] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 4 and shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 4 and shape[-1] == 3:
        arr = _luma(_as_uint8(arr, what))
    elif arr.ndim == 2:
        hw = image_shape or _square(shape[1])
        if hw is None:
            raise DataError(f"{what} holds flat images of {shape[1]} values, not a square number "
                            "of pixels; say how they form an image with --image-shape H,W")
        if hw[0] * hw[1] != shape[1]:
            raise DataError(f"{what} holds flat images of {shape[1]} values, but --image-shape "
                            f"{hw[0]},{hw[1]} needs {hw[0] * hw[1]}")
        arr = arr.reshape(len(arr), *hw)
    if arr.ndim != 3:
        raise DataError(f"{what} has shape {shape}; images must be (N, H, W), (N, H, W, 1), "
                        "(N, 1, H, W), (N, H, W, 3) or flat (N, H*W)")
    if image_shape is not None and len(shape) != 2 and tuple(arr.shape[1:]) != image_shape:
        raise DataError(f"{what} holds {arr.shape[1]}x{arr.shape[2]} images, but --image-shape "
                        f"says {image_shape[0]}x{image_shape[1]}")
    if 0 in arr.shape[1:]:
        raise DataError(f"{what} has shape {shape}: images without pixels")
    return np.ascontiguousarray(_as_uint8(arr, what))


def _as_labels(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        hint = " (one-hot? save y.argmax(1))" if arr.ndim == 2 else ""
        raise DataError(f"{what} has shape {arr.shape}; labels must be (N,) class indices{hint}")
    if arr.dtype.kind == "f" and len(arr) and (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
        raise DataError(f"{what} has dtype {arr.dtype}; labels must be integer class indices")
    return arr.astype(np.int64)


def _array_part(x: np.ndarray, y: np.ndarray, xwhat: str, ywhat: str,
                image_shape: tuple[int, int] | None) -> Part:
    images = _as_images(x, xwhat, image_shape)
    labels = _as_labels(y, ywhat)
    if len(images) != len(labels):
        raise DataError(f"{xwhat} has {len(images)} images but {ywhat} has {len(labels)} labels; "
                        "they must be the same length")
    if not len(images):
        raise DataError(f"{xwhat} holds no images")
    part = Part(images, labels, lambda i: f"{ywhat}[{i}]")
    _check_labels(labels, part.where)
    return part


# --------------------------------------------------------------------------- IDX folder


def _read_idx_file(path: Path, role: str, part: tuple[int, int] | None = None
                   ) -> tuple[np.ndarray, str]:
    """One IDX file: (array, sha256 of the file as stored). Uncompressed: memory-mapped. With
    ``part``, images keep only that share of the rows (labels are read whole: they are small and
    name the classes)."""
    try:
        if not is_gzip(path):
            arr = map_idx(path)
            if part is not None and role.endswith("images"):
                arr = arr[slice(*part_of(len(arr), *part))]
        elif part is not None and role.endswith("images"):
            start, stop = part_of(idx_shape(path)[0], *part)
            arr = read_idx_rows(path, start, stop)[0]
        else:
            arr = parse_idx(read_bytes(path), str(path))
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None
    ndim = 3 if role.endswith("images") else 1
    if arr.ndim != ndim:
        raise IDXError(f"{path}: expected {ndim} dimensions for {role.replace('_', ' ')}, the "
                       f"header says {arr.ndim} {arr.shape}")
    if role.endswith("images") and arr.dtype != np.uint8:
        raise IDXError(f"{path}: expected uint8 images, the header says {arr.dtype}")
    if role.endswith("labels") and arr.dtype.kind not in "iu":
        raise IDXError(f"{path}: expected integer labels, the header says {arr.dtype}")
    return arr, file_digest(path)


def idx_files(folder: Path) -> dict[str, Path]:
    """Role -> file of the IDX folder: both train files, and both test files or neither."""
    found = {role: file_in(folder, name) for role, name in IDX_NAMES.items()}
    listing = ", ".join(IDX_NAMES.values())
    for role in ("train_images", "train_labels"):
        if found[role] is None:
            raise DataError(f"{folder}: no {IDX_NAMES[role]} (or .gz); an IDX folder holds "
                            f"{listing} (the t10k files optional, .gz or raw)")
    if (found["test_images"] is None) != (found["test_labels"] is None):
        have, miss = (("test_images", "test_labels") if found["test_labels"] is None
                      else ("test_labels", "test_images"))
        raise DataError(f"{folder}: {found[have].name} is there but not "
                        f"{IDX_NAMES[miss]} (or .gz); give both test files or neither")
    return {role: p for role, p in found.items() if p is not None}


def read_idx_dir(folder: Path, opts: ReadOptions) -> Source:
    files = idx_files(folder)
    if not opts.want_test:
        files = {r: p for r, p in files.items() if r.startswith("train")}
    # gunzip and sha256 release the GIL: the files are read at once, as load_dataset does
    part = opts.part
    if part is not None:  # the image file's rows must be the label file's
        n_images = idx_shape(files["train_images"])[0]
        n_labels = idx_shape(files["train_labels"])[0]
        if n_images != n_labels:
            raise DataError(f"{files['train_images']} has {n_images} images but "
                            f"{files['train_labels']} has {n_labels} labels; they must be the "
                            "same length")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {role: pool.submit(_read_idx_file, path, role,
                                     part if role.startswith("train") else None)
                   for role, path in files.items()}
        arrays = {role: f.result() for role, f in futures.items()}
    parts, all_train_labels = {}, None
    for split in ("train", "test"):
        if f"{split}_images" not in arrays:
            continue
        images, labels = arrays[f"{split}_images"][0], arrays[f"{split}_labels"][0]
        ipath, lpath = files[f"{split}_images"], files[f"{split}_labels"]
        offset = 0
        if split == "train" and part is not None:
            all_train_labels = labels.astype(np.int64)
            _check_labels(all_train_labels, lambda i, p=lpath: f"{p} label {i}")
            offset, stop = part_of(len(labels), *part)
            labels = labels[offset:stop]
        if len(images) != len(labels):
            raise DataError(f"{ipath} has {len(images)} images but {lpath} has {len(labels)} "
                            "labels; they must be the same length")
        if not len(images):
            raise DataError(f"{ipath} holds no images")
        if not images.flags.writeable:
            images = images.copy()
        read = Part(images, labels.astype(np.int64),
                    lambda i, p=lpath, o=offset: f"{p} label {i + o}")
        _check_labels(read.labels, read.where)
        parts[split] = read
    checksum = tree_digest([(files[r].name, d) for r, (_, d) in arrays.items()])
    return Source("idx", folder, parts["train"], parts.get("test"), None, checksum, len(files),
                  all_train_labels=all_train_labels)


# --------------------------------------------------------------------------- CSV


def _open_text(path: Path) -> tuple[io.TextIOBase, bool]:
    """The file as text (gunzipped when it starts with the gzip magic), and whether it was."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    # undecodable bytes become U+FFFD, which the line's check then names as not an integer
    if gz:
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline=""), gz
    return open(path, encoding="utf-8-sig", errors="replace", newline=""), gz


def _csv_header(path: Path, line: str, image_shape: tuple[int, int] | None
                ) -> tuple[list[str], tuple[int, int]]:
    """The header's column names and the image shape the pixel columns form."""
    if not line.strip():
        why = "the file is empty" if not line else "the line is blank"
        raise DataError(f"{path} line 1: no header row ({why}); expected label,pixel1,...,pixelN "
                        "and then one row per image")
    names = [n.strip() for n in next(csv.reader([line]))]
    if names[0].lower() != "label":
        if all(_INT.fullmatch(n) for n in names):
            raise DataError(f"{path} line 1: no header row (the line holds numbers); add one: "
                            f"label,pixel1,...,pixel{len(names) - 1}")
        raise DataError(f"{path} line 1: the first column is {names[0]!r}, expected 'label' "
                        "(the layout is label,pixel1,...,pixelN)")
    n = len(names) - 1
    if n == 0:
        raise DataError(f"{path} line 1: no pixel columns after 'label'")
    numbers = [_PIXEL_NAME.fullmatch(name) for name in names[1:]]
    if all(numbers):
        first = int(numbers[0].group(1))
        for j, m in enumerate(numbers):
            if first not in (0, 1) or int(m.group(1)) != first + j:
                raise DataError(f"{path} line 1: column {j + 2} is {names[j + 1]!r}, expected "
                                f"'pixel{(first if first in (0, 1) else 1) + j}': a pixel "
                                "column is missing, repeated or out of order")
    if image_shape is not None:
        if image_shape[0] * image_shape[1] != n:
            raise DataError(f"{path} line 1: {n} pixel columns, but --image-shape "
                            f"{image_shape[0]},{image_shape[1]} needs "
                            f"{image_shape[0] * image_shape[1]}")
        return names, image_shape
    shape = _square(n)
    if shape is None:
        r = math.isqrt(n)
        raise DataError(f"{path} line 1: {n} pixel columns is not a square number ({r}x{r} is "
                        f"{r * r}, {r + 1}x{r + 1} is {(r + 1) ** 2}): a column is missing or "
                        "extra, or give the image's shape with --image-shape H,W")
    return names, shape


def _csv_problem(path: Path, lines: list[str], first_line: int, names: list[str]) -> str | None:
    """The first problem in a chunk of CSV lines, as a message naming the line; None if none."""
    ncols = len(names)
    for k, line in enumerate(lines):
        text = line.rstrip("\r\n")
        if not text:
            continue  # a blank line (skipped)
        fields = text.split(",")
        if len(fields) != ncols:
            return (f"{path} line {first_line + k}: {len(fields)} values, expected {ncols} = "
                    f"1 label + {ncols - 1} pixels")
        for j, value in enumerate(fields):
            if not _INT.fullmatch(value):
                what = "the label" if j == 0 else f"{names[j]} (column {j + 1})"
                return f"{path} line {first_line + k}: {what} is {value.strip()!r}, not an integer"
    return None


def _parse_csv_chunk(path: Path, lines: list[str], first_line: int, names: list[str]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Parse a chunk of lines: (int64 values (rows, ncols), line number of each row)."""
    numbers = first_line + np.flatnonzero([line.rstrip("\r\n") != "" for line in lines])
    if not len(numbers):
        return np.zeros((0, len(names)), np.int64), numbers
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            values = np.loadtxt(lines, delimiter=",", dtype=np.int64, comments=None, ndmin=2)
    except ValueError as e:
        problem = _csv_problem(path, lines, first_line, names)
        raise DataError(problem or f"{path} lines {first_line}-{first_line + len(lines) - 1}: "
                        f"{' '.join(str(e).split())}") from None
    if values.shape[1] != len(names):  # every row of the chunk has the same wrong count
        raise DataError(_csv_problem(path, lines, first_line, names)
                        or f"{path} line {numbers[0]}: {values.shape[1]} values")
    return values, numbers


def read_csv(path: Path, opts: ReadOptions) -> Source:
    from tqdm.auto import tqdm

    images, labels, lines_of = [], [], []
    with ThreadPoolExecutor(max_workers=1) as hasher:
        digest = hasher.submit(file_digest, path)  # hashed while it is parsed (both drop the GIL)
        try:
            f, gz = _open_text(path)
        except OSError as e:
            raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None
        total = None if gz else path.stat().st_size  # (characters read ~ bytes: the text is ASCII)
        with f, tqdm(total=total, unit="B", unit_scale=True, desc=path.name,
                     disable=not opts.progress, leave=False, mininterval=0.2) as bar:
            try:
                header = f.readline()
                names, shape = _csv_header(path, header, opts.image_shape)
                line_no = 2
                while lines := list(islice(f, CSV_CHUNK)):
                    values, numbers = _parse_csv_chunk(path, lines, line_no, names)
                    pixels = values[:, 1:]
                    bad = (pixels < 0) | (pixels > 255)
                    if bad.any():
                        row, col = np.argwhere(bad)[0]
                        raise DataError(f"{path} line {numbers[row]}: {names[col + 1]} is "
                                        f"{pixels[row, col]}, outside 0-255")
                    images.append(pixels.astype(np.uint8).reshape(len(values), *shape))
                    labels.append(values[:, 0])
                    lines_of.append(numbers)
                    line_no += len(lines)
                    bar.update(sum(map(len, lines)))
            except (OSError, EOFError, zlib.error) as e:
                raise DataError(f"{path}: cannot read the file ({e})") from None
        checksum = f"sha256:{digest.result()}"
    if not images or not sum(map(len, images)):
        raise DataError(f"{path}: no rows after the header; expected one row per image")
    line_of = np.concatenate(lines_of)
    part = Part(np.concatenate(images), np.concatenate(labels),
                lambda i: f"{path} line {line_of[i]}")
    _check_labels(part.labels, part.where)
    return Source("csv", path, part, None, None, checksum, 1)


# --------------------------------------------------------------------------- NumPy


def _npz_arrays(path: Path, data: bytes) -> dict[str, np.ndarray]:
    try:
        buffer = io.BytesIO(data)
        npz = np.load(buffer, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a NumPy .npz file ({' '.join(str(e).split())}); save the "
                        "arrays with numpy.savez(path, x_train=..., y_train=..., x_test=..., "
                        "y_test=...)") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, not an .npz archive; save the arrays with "
                        "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
    with npz:
        keys = list(npz.files)
        _check_array_names(path, keys, keys)
        out = {}
        for key in ARRAY_NAMES:
            if key in keys:
                try:
                    out[key] = npz[key]
                except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
                    raise DataError(f"{path}: cannot read the array {key} "
                                    f"({' '.join(str(e).split())})") from None
    return out


def _check_array_names(where: Path, have: Sequence[str], listed: Sequence[str], suffix: str = ""
                       ) -> None:
    """``have``: the array names found; ``listed``: what the file or folder holds."""
    missing = [k + suffix for k in ("x_train", "y_train") if k not in have]
    holds = ", ".join(listed) if listed else "nothing"
    if missing:
        raise DataError(f"{where}: no {' or '.join(missing)} (it holds {holds}); expected "
                        f"x_train{suffix}, y_train{suffix} and optionally x_test{suffix}, "
                        f"y_test{suffix}: the arrays keras.datasets gives")
    if ("x_test" in have) != ("y_test" in have):
        one = "x_test" if "x_test" in have else "y_test"
        other = "y_test" if one == "x_test" else "x_test"
        raise DataError(f"{where}: {one}{suffix} without {other}{suffix}; give both test arrays "
                        "or neither")


def read_npz(path: Path, opts: ReadOptions) -> Source:
    data = _read_file(path)
    checksum = f"sha256:{hashlib.sha256(data).hexdigest()}"
    arrays = _npz_arrays(path, data)
    del data
    parts = {split: _array_part(arrays[f"x_{split}"], arrays[f"y_{split}"], f"{path} x_{split}",
                                f"{path} y_{split}", opts.image_shape)
             for split in ("train", "test") if f"x_{split}" in arrays
             and (split == "train" or opts.want_test)}
    return Source("npz", path, parts["train"], parts.get("test"), None, checksum, 1)


def npy_files(folder: Path) -> dict[str, Path]:
    """Array name -> its .npy file in ``folder`` (x_train, y_train, and the test pair or none)."""
    found = {k: folder / f"{k}.npy" for k in ARRAY_NAMES if (folder / f"{k}.npy").is_file()}
    listed = sorted(p.name for p in folder.glob("*.npy"))
    _check_array_names(folder, list(found), listed, ".npy")
    return found


def read_npy_dir(folder: Path, opts: ReadOptions) -> Source:
    files = npy_files(folder)
    if not opts.want_test:
        files = {k: p for k, p in files.items() if k.endswith("train")}
    arrays, entries = {}, []
    for key, path in files.items():
        try:
            entries.append((path.name, file_digest(path)))
        except OSError as e:
            raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None
        try:
            arrays[key] = map_npy(path)  # memory-mapped: rows are read when they are used
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{path}: not a NumPy .npy array ({' '.join(str(e).split())}); save "
                            "it with numpy.save") from None
        if not isinstance(arrays[key], np.ndarray):
            raise DataError(f"{path}: an .npz archive, not a .npy array; save it with numpy.save")
    all_train_labels = None
    if opts.part is not None:  # x_train's share; the labels whole (they name the classes)
        x, y = arrays["x_train"], arrays["y_train"]
        ywhat = str(files["y_train"])
        if len(x) != len(y):
            raise DataError(f"{files['x_train']} has {len(x)} images but {ywhat} has {len(y)} "
                            "labels; they must be the same length")
        all_train_labels = _as_labels(y, ywhat)
        _check_labels(all_train_labels, lambda i: f"{ywhat}[{i}]")
        start, stop = part_of(len(x), *opts.part)
        arrays["x_train"], arrays["y_train"] = x[start:stop], y[start:stop]
    parts = {split: _array_part(arrays[f"x_{split}"], arrays[f"y_{split}"],
                                str(files[f"x_{split}"]), str(files[f"y_{split}"]),
                                opts.image_shape)
             for split in ("train", "test") if f"x_{split}" in arrays}
    return Source("npy", folder, parts["train"], parts.get("test"), None, tree_digest(entries),
                  len(files), all_train_labels=all_train_labels)


# --------------------------------------------------------------------------- encoded images


def _decode(sources: list, names: list[str], opts: ReadOptions, desc: str,
            failed_before: dict[int, str] | None = None) -> tuple[Decoded, np.ndarray, list[str]]:
    """Decode encoded images: the result, the indices of the decodable ones (sorted) and one
    line per failure (``failed_before``: images already known to be unusable, not decoded)."""
    failed_before = failed_before or {}
    todo = [i for i in range(len(names)) if i not in failed_before]
    decoded = decode_many([sources[i] for i in todo], [names[i] for i in todo], opts.prep,
                          progress=opts.progress, desc=desc)
    if failed_before:  # back to the positions of all the images
        images = np.zeros((len(names), *decoded.images.shape[1:]), np.uint8)
        images[todo] = decoded.images
        digests: list[str | None] = [None] * len(names)
        for k, i in enumerate(todo):
            digests[i] = decoded.digests[k]
        errors = dict(failed_before) | {todo[k]: m for k, m in decoded.errors.items()}
        decoded = Decoded(images, errors, digests)
    failed = sorted(decoded.errors)
    if failed and opts.strict:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise DataError(f"{decoded.errors[failed[0]]}{more}; fix or remove the image, or load "
                        "without --strict to skip images that cannot be decoded")
    keep = np.setdiff1d(np.arange(len(names)), failed)
    return decoded, keep, [decoded.errors[i] for i in failed]


def _named_part(images: np.ndarray, labels: np.ndarray, index: np.ndarray,
                names: Callable[[int], str]) -> Part:
    """The examples at ``index``, example i named ``names(index[i])``."""
    return Part(images[index], labels[index], lambda i: names(int(index[i])))


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.parquet
    except ImportError:
        raise ConfigError("reading Parquet files needs pyarrow: pip install pyarrow (or "
                          "pip install 'softmaxlab[formats]')") from None
    return pyarrow


def _hf_features(schema) -> dict:
    """The ``huggingface`` schema metadata's features ({} when absent or unreadable)."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        features = json.loads(raw)["info"]["features"] if raw else {}
    except (ValueError, KeyError, TypeError):
        return {}
    return features if isinstance(features, dict) else {}


def _pick_column(path: Path, names: list[str], features: dict, wanted: str, hf_type: str,
                 ) -> str:
    if wanted in names:
        return wanted
    typed = [n for n in names if isinstance(features.get(n), dict)
             and features[n].get("_type") == hf_type]
    if len(typed) == 1:
        return typed[0]
    raise DataError(f"{path}: no {wanted} column (the columns are {', '.join(names) or 'none'}); "
                    "expected Hugging Face's layout: an 'image' column of {bytes, path} structs "
                    "holding encoded images and an integer 'label' column")


def read_parquet(path: Path, opts: ReadOptions) -> Source:
    pa = _pyarrow()
    try:
        checksum = f"sha256:{file_digest(path)}"
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None
    offset = 0  # the file's row of the first row read
    try:
        pf = pa.parquet.ParquetFile(str(path), memory_map=True)
        schema = pf.schema_arrow
        names = list(schema.names)
        features = _hf_features(schema)
        image_col = _pick_column(path, names, features, "image", "Image")
        label_col = _pick_column(path, names, features, "label", "ClassLabel")
        if opts.part is None:
            table = pf.read(columns=[image_col, label_col])
            all_labels_col = None
        else:  # the labels whole, the images of the row groups holding this share alone
            all_labels_col = pf.read(columns=[label_col]).column(label_col)
            start, stop = part_of(pf.metadata.num_rows, *opts.part)
            bounds = np.cumsum([0] + [pf.metadata.row_group(g).num_rows
                                      for g in range(pf.num_row_groups)])
            groups = [g for g in range(pf.num_row_groups)
                      if bounds[g] < stop and bounds[g + 1] > start]
            offset = int(bounds[groups[0]]) if groups else start
            table = pf.read_row_groups(groups, columns=[image_col, label_col]) if groups else \
                pf.schema_arrow.empty_table().select([image_col, label_col])
            table = table.slice(start - offset, stop - start)
            offset = start
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())})"
                        ) from None

    def row(i: int) -> str:  # rows count from 0, as datasets[i] does
        return f"{path} row {i + offset}"

    label_type = table.schema.field(label_col).type
    if not pa.types.is_integer(label_type):
        raise DataError(f"{path}: the {label_col} column holds {label_type}, not integer class "
                        "indices")
    labels_col = table.column(label_col)
    if labels_col.null_count:
        i = int(np.flatnonzero(labels_col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{row(i)}: no label (null)")
    labels = labels_col.to_numpy().astype(np.int64)
    feature = features.get(label_col)
    names_meta = feature.get("names") if isinstance(feature, dict) else None
    class_names = None
    if isinstance(names_meta, list) and names_meta and all(isinstance(n, str) for n in names_meta):
        class_names = tuple(names_meta)  # the ClassLabel's names
    _check_labels(labels, row, len(class_names) if class_names else None,
                  "the file's huggingface metadata")
    all_labels = None
    if all_labels_col is not None:
        if all_labels_col.null_count:
            i = int(np.flatnonzero(all_labels_col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{path} row {i}: no label (null)")
        all_labels = all_labels_col.to_numpy().astype(np.int64)
        _check_labels(all_labels, lambda i: f"{path} row {i}",
                      len(class_names) if class_names else None, "the file's huggingface metadata")
    images_col = table.column(image_col)
    itype = images_col.type
    if pa.types.is_struct(itype) and itype.get_field_index("bytes") >= 0:
        blobs = pa.compute.struct_field(images_col, "bytes").to_pylist()
        paths = (pa.compute.struct_field(images_col, "path").to_pylist()
                 if itype.get_field_index("path") >= 0 else [None] * len(blobs))
    elif pa.types.is_binary(itype) or pa.types.is_large_binary(itype):
        blobs, paths = images_col.to_pylist(), [None] * len(images_col)
    else:
        raise DataError(f"{path}: the {image_col} column holds {itype}, not encoded images "
                        "({bytes, path} structs or binary)")
    if not len(blobs):
        raise DataError(f"{path}: no rows")
    missing = {}
    for i in np.flatnonzero(np.array([b is None for b in blobs], bool)):
        only = f", only the path {paths[i]!r}" if paths[i] else ""
        missing[int(i)] = f"{row(i)}: the image has no bytes{only}"
    decoded, keep, skipped = _decode(blobs, [row(i) for i in range(len(blobs))], opts,
                                     path.name, missing)
    if not len(keep):
        raise DataError(f"{path}: none of the {len(blobs)} images can be decoded: {skipped[0]}")
    part = _named_part(decoded.images, labels, keep, row)
    return Source("parquet", path, part, None, class_names, checksum, 1,
                  skipped[:MAX_SKIPPED_LISTED], len(skipped), all_labels)


# --------------------------------------------------------------------------- image folders


def folder_layout(folder: Path, want_test: bool = True) -> dict[str, Path]:
    """Split -> the folder holding its class folders: ``{"train": folder}``, or ``train/`` and
    ``test/`` when both are there (``test`` left out unless ``want_test``)."""
    train, test = folder / "train", folder / "test"
    if train.is_dir() and test.is_dir():
        return {"train": train, "test": test} if want_test else {"train": train}
    return {"train": folder}


def class_folders(root: Path) -> list[Path]:
    """The class folders in ``root``: its sub-folders (hidden ones skipped), sorted by name."""
    try:
        return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.name)
    except OSError as e:
        raise DataError(f"{root}: cannot list the folder ({e.strerror or e})") from None


def folder_files(folder: Path, want_test: bool = True
                 ) -> dict[str, list[tuple[str, list[str]]]]:
    """Split -> [(class name, its image files)], checked: two classes or more, each with images,
    and no test class the training split lacks."""
    exts = ", ".join(e.lstrip(".").upper() for e in IMAGE_EXTENSIONS[:6])
    layout = folder_layout(folder, want_test)
    out = {}
    for split, root in layout.items():
        classes = class_folders(root)
        if not classes:
            loose = [p for p in image_files(root) if os.path.dirname(p) == str(root)]
            hint = (f" (it holds {len(loose)} images directly: put each class's images in a "
                    "sub-folder named after the class)" if loose else "")
            raise DataError(f"{root}: no class folders{hint}; a folder dataset holds one "
                            "sub-folder per class (ROOT/CLASS/IMAGE.png), or train/ and test/ "
                            "folders laid out so")
        entries = []
        for c in classes:
            files = image_files(c)
            if not files:
                raise DataError(f"{c}: no image files ({exts}, ...) in the class folder; add "
                                "images or remove the folder")
            entries.append((c.name, files))
        out[split] = entries
    if len(out["train"]) < 2:
        raise DataError(f"{layout['train']}: only one class folder ({out['train'][0][0]!r}); a "
                        "classifier needs two classes or more, one sub-folder each")
    if "test" in out:
        known = {name for name, _ in out["train"]}
        for name, _ in out["test"]:
            if name not in known:
                raise DataError(f"{layout['test'] / name}: the class {name!r} is not among the "
                                f"training classes ({', '.join(sorted(known))})")
    return out


def read_folder(folder: Path, opts: ReadOptions) -> Source:
    listing = folder_files(folder, opts.want_test)
    class_names = tuple(name for name, _ in listing["train"])
    index = {name: k for k, name in enumerate(class_names)}
    files, labels, splits = [], [], []
    for split, entries in listing.items():
        for name, paths in entries:
            files += paths
            labels += [index[name]] * len(paths)
            splits += [split] * len(paths)
    labels_arr, splits_arr = np.array(labels, np.int64), np.array(splits)
    decoded, keep, skipped = _decode(files, files, opts, folder.name)
    checksum = tree_digest(list(zip(_relative(folder, files), decoded.digests)))
    parts = {split: _named_part(decoded.images, labels_arr, keep[splits_arr[keep] == split],
                                files.__getitem__)
             for split in listing}
    counts = np.bincount(parts["train"].labels, minlength=len(class_names))
    if (counts == 0).any():
        empty = class_names[int(np.flatnonzero(counts == 0)[0])]
        root = folder_layout(folder, opts.want_test)["train"]
        raise DataError(f"{root / empty}: none of the class's images can be decoded "
                        f"({skipped[0] if skipped else 'no images'})")
    return Source("folder", folder, parts["train"], parts.get("test"), class_names, checksum,
                  len(files), skipped[:MAX_SKIPPED_LISTED], len(skipped))


def _relative(folder: Path, files: list[str]) -> list[str]:
    """The files' paths relative to ``folder``, with "/" (the same on every system)."""
    start = len(os.path.join(str(folder), ""))
    return [f[start:].replace(os.sep, "/") for f in files]


READERS: dict[str, Callable[[Path, ReadOptions], Source]] = {
    "idx": read_idx_dir,
    "csv": read_csv,
    "npz": read_npz,
    "npy": read_npy_dir,
    "parquet": read_parquet,
    "folder": read_folder,
}


def source_checksum(kind: str, path: Path, want_test: bool = True) -> tuple[str, int]:
    """The checksum (and file count) a reader of ``kind`` would give ``path``, without decoding
    anything: the files are only hashed."""
    if kind in ("csv", "npz", "parquet"):
        return f"sha256:{file_digest(path)}", 1
    if kind == "idx":
        files = idx_files(path)
        if not want_test:
            files = {r: p for r, p in files.items() if r.startswith("train")}
        names = [str(p) for p in files.values()]
    elif kind == "npy":
        files = npy_files(path)
        if not want_test:
            files = {k: p for k, p in files.items() if k.endswith("train")}
        names = [str(p) for p in files.values()]
    else:
        listing = folder_files(path, want_test)
        names = [p for entries in listing.values() for _, paths in entries for p in paths]
    digests = _file_digests(names)
    if kind == "folder":
        return tree_digest(list(zip(_relative(path, names), digests))), len(names)
    return tree_digest([(os.path.basename(n), d) for n, d in zip(names, digests)]), len(names)
