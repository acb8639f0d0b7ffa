"""A named dataset written out in another layout (``softmaxlab data export``).

Layouts (:data:`LAYOUTS`), each one that a reader accepts back:

- ``torchvision``: the dataset's own files, uncompressed, in ``DIR/<Name>/raw/`` under the names
  torchvision's ``MNIST``-family classes check for (``DIR/FashionMNIST/raw/train-images-idx3-ubyte``,
  ``DIR/EMNIST/raw/emnist-letters-train-images-idx3-ubyte``, ``DIR/QMNIST/raw/qmnist-test-labels-
  idx2-int``, ...), so ``torchvision.datasets.FashionMNIST(root=DIR)`` loads them as it would its
  own download. The bytes are the published files' (verified first): EMNIST's images stay
  transposed and its letters labelled 1-26, QMNIST's test file keeps its 60,000 images and its
  2-D labels, as torchvision expects them.
- ``idx``: the four standard IDX files (``train-images-idx3-ubyte``, ...; uncompressed) of the
  data as softmaxlab loads it (upright images, labels 0..K-1, QMNIST's test10k): ``idx:DIR``.
- ``png``: ``DIR/train/<class>/<index>.png`` and ``DIR/test/...``, one 8-bit grayscale PNG per
  image, ``<index>`` its position in the split (zero-padded): ``folder:DIR``. Class folders are
  named after the classes, or numbered ``00-A``, ``01-a``, ... (in class order) when two names
  differ only in case (EMNIST's byclass, bymerge, balanced: one folder each on case-insensitive
  file systems) or a name cannot be a folder name.
- ``csv``: ``DIR/<name>_train.csv`` and ``DIR/<name>_test.csv`` in Kaggle's layout, a header
  ``label,pixel1,...,pixelN`` then one row per image (label 0..K-1, pixels row-major):
  ``csv:DIR/<name>_train.csv --test-data csv:DIR/<name>_test.csv``.

Every file is written to a temporary name and renamed into place when complete (a ``png`` split
folder as a whole), so an interrupted export leaves no partial file. Existing outputs are never
replaced unless ``force`` (for ``png``, the ``train/`` and ``test/`` folders are replaced whole).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, os_fault
from ..fsutil import atomic_path
from .datasets import ImageDataset, load_dataset
from .idx import IDXError, parse_idx, read_bytes, write_idx
from .sources import REPLACE_HINT, locate, verify
from .specs import FASHION_MNIST, ROLES, DatasetSpec, get_spec

LAYOUTS = ("torchvision", "idx", "png", "csv")
CSV_ROWS = 2048  # rows formatted per write
PNG_COMPRESSION = 1  # zlib level: small images compress about as well at 1 as at 9, faster
IDX_NAMES = FASHION_MNIST.files  # role -> the standard IDX file name, as idx:DIR reads them
_UNSAFE = set('/\\:*?"<>|\0')  # characters a folder name cannot hold on some file system


class OutputExists(ConfigError, FileExistsError):
    """An export would replace existing files; the message names them and says ``--force``."""


def export_dataset(
    name: str,
    layout: str,
    out_dir: str | os.PathLike,
    force: bool = False,
    data_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    offline: bool | None = None,
    progress: bool = False,
) -> list[Path]:
    """Write the named dataset ``name`` into ``out_dir`` in ``layout`` (see the module
    docstring); the dataset is found or downloaded as :func:`~softmaxlab.data.load_dataset` does.

    Returns:
        the paths written (files; for ``png`` the two split folders).
    Raises:
        ConfigError: an unknown name or layout. OutputExists: outputs exist and not ``force``.
        DataNotFoundError, ChecksumError, IDXError: as loading the dataset raises them.
        SystemFault: ``out_dir`` cannot be written.
    """
    spec = get_spec(name)
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    out = Path(out_dir).expanduser()
    if layout == "torchvision":
        raw = out / spec.torchvision_name / "raw"
        _check_free([raw / spec.files[r] for r in ROLES], force)
        paths = locate(spec, data_dir=data_dir, mirror=mirror, offline=offline,
                       progress=progress)
        return write_torchvision(spec, paths, raw)
    outputs = {"idx": lambda: [out / IDX_NAMES[r] for r in ROLES],
               "png": lambda: [out / "train", out / "test"],
               "csv": lambda: [out / f"{name}_train.csv", out / f"{name}_test.csv"]}[layout]()
    _check_free(outputs, force)
    train, test = load_dataset(name, data_dir=data_dir, mirror=mirror, offline=offline,
                               progress=progress)
    if layout == "idx":
        return write_idx_files(train, test, out)
    if layout == "png":
        return write_png_folders(train, test, out, progress)
    return write_csv_files(train, test, outputs[0], outputs[1])


def _check_free(paths: list[Path], force: bool) -> None:
    """OutputExists naming the first existing path of ``paths``, unless ``force``."""
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExists(f"{existing[0]} exists{more}; give another folder, or --force to "
                           "replace what the export writes")


# --------------------------------------------------------------------------- torchvision


def write_torchvision(spec: DatasetSpec, paths: dict[str, Path], raw: Path) -> list[Path]:
    """Each of ``spec``'s files (role -> path, .gz or not) uncompressed into ``raw`` under its
    own name, after checking it is a valid IDX file with the spec's md5."""
    written = []
    for role in ROLES:
        src = paths[role]
        try:
            content = read_bytes(src)
        except OSError as e:
            raise os_fault(src, e, "read", "check the file and its permissions") from None
        try:
            parse_idx(content, str(src))
        except IDXError as e:
            raise IDXError(f"{e}: the file is damaged or is not {spec.name}'s; "
                           f"{REPLACE_HINT}") from None
        verify(src, content, spec)
        dest = raw / spec.files[role]
        with atomic_path(dest) as tmp:
            Path(tmp).write_bytes(content)
        written.append(dest)
    return written


# --------------------------------------------------------------------------- idx


def write_idx_files(train: ImageDataset, test: ImageDataset, out: Path) -> list[Path]:
    """The four standard IDX files (uncompressed) of the splits: uint8 images (N, H, W) as they
    are loaded (upright), uint8 labels 0..K-1."""
    if train.num_classes > 256:
        raise ConfigError(f"{train.num_classes} classes do not fit IDX's uint8 labels; export "
                          "the data as csv or png")
    written = []
    for split, ds in (("train", train), ("test", test)):
        written.append(write_idx(out / IDX_NAMES[f"{split}_images"], ds.images.cpu().numpy(),
                                 compress=False))
        written.append(write_idx(out / IDX_NAMES[f"{split}_labels"],
                                 ds.labels.cpu().numpy().astype(np.uint8), compress=False))
    return written


# --------------------------------------------------------------------------- png


def class_folder_names(class_names: tuple[str, ...]) -> list[str]:
    """The folder of each class: its name, or ``NN-name`` (zero-padded class index) for all of
    them when two names differ only in case or a name cannot be a folder name."""
    folded = [c.casefold() for c in class_names]
    safe = all(c and c.strip() == c and c not in (".", "..") and not c.startswith(".")
               and not set(c) & _UNSAFE for c in class_names)
    if safe and len(set(folded)) == len(folded):
        return list(class_names)
    width = len(str(len(class_names) - 1))
    return [f"{k:0{width}d}-{''.join('_' if ch in _UNSAFE else ch for ch in c)}"
            for k, c in enumerate(class_names)]


def write_png_folders(train: ImageDataset, test: ImageDataset, out: Path,
                      progress: bool = False) -> list[Path]:
    """``out/train`` and ``out/test``: one folder per class, one PNG per image named by its
    index in the split; each split folder made aside and renamed into place whole.
    ``progress``: a tqdm bar on stderr."""
    from tqdm.auto import tqdm

    folders = class_folder_names(train.class_names)
    written = []
    for split, ds in (("train", train), ("test", test)):
        dest = out / split
        with _atomic_folder(dest) as tmp:
            for folder in folders:
                (tmp / folder).mkdir()
            width = len(str(max(len(ds) - 1, 0)))
            images, labels = ds.images.cpu().numpy(), ds.labels.cpu().tolist()
            for i, label in enumerate(tqdm(labels, desc=f"{split} PNGs", unit="img",
                                           disable=not progress, leave=False)):
                # (a strided image, EMNIST's, is copied upright by Pillow)
                Image.fromarray(images[i]).save(tmp / folders[label] / f"{i:0{width}d}.png",
                                                compress_level=PNG_COMPRESSION)
        written.append(dest)
    return written


@contextlib.contextmanager
def _atomic_folder(dest: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``dest``; on success it replaces ``dest`` (an
    existing one is removed once the new one is in place), else it is removed."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    except OSError as e:
        raise os_fault(dest, e) from e
    old = None
    try:
        try:
            yield tmp
            if dest.exists() or dest.is_symlink():
                old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old",
                                            dir=dest.parent))
                os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
        except OSError as e:
            raise os_fault(dest, e) from e
    finally:
        for leftover in (tmp, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


# --------------------------------------------------------------------------- csv


def write_csv_files(train: ImageDataset, test: ImageDataset, train_path: Path,
                    test_path: Path) -> list[Path]:
    """Each split as a CSV file in Kaggle's layout (``label,pixel1,...,pixelN``, one row per
    image, pixels row-major as loaded)."""
    for ds, path in ((train, train_path), (test, test_path)):
        _write_csv(ds, path)
    return [train_path, test_path]


def _write_csv(ds: ImageDataset, path: Path) -> None:
    n_pixels = ds.num_features
    header = "label," + ",".join(f"pixel{j}" for j in range(1, n_pixels + 1)) + "\n"
    table = np.array([str(v) for v in range(256)], dtype=object)  # byte value -> its digits
    images, labels = ds.images.cpu(), ds.labels.cpu().numpy()
    with atomic_path(path) as tmp, open(tmp, "w", encoding="ascii", newline="") as f:
        f.write(header)
        for start in range(0, len(labels), CSV_ROWS):
            rows = np.ascontiguousarray(images[start:start + CSV_ROWS].numpy())
            cells = table[rows.reshape(len(rows), n_pixels)]
            f.write("".join(f"{label},{','.join(row)}\n"
                            for label, row in zip(labels[start:start + CSV_ROWS].tolist(),
                                                  cells.tolist())))

