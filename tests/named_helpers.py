"""Small files in the real layouts of the named datasets (EMNIST's zip, QMNIST's 2-D labels,
KMNIST's plain IDX files), and specs that accept them."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import make_dataset
from softmaxlab.data import SPECS, write_idx
from softmaxlab.data.specs import Archive, DatasetSpec


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_bytes(arr: np.ndarray) -> bytes:
    """``arr`` as the bytes of an uncompressed IDX file."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return write_idx(Path(d) / "x", arr, compress=False).read_bytes()


def split_arrays(spec: DatasetSpec, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Upright uint8 images (n, 28, 28) and class indices (n,) int64 of a tiny dataset with
    ``spec``'s classes (conftest's make_dataset, which a linear model can learn)."""
    ds = make_dataset(n, seed, num_classes=spec.num_classes, class_names=spec.class_names)
    return ds.images.numpy(), ds.labels.numpy()


def make_emnist_zip(path: Path, splits: dict[str, tuple[int, int]], seed: int = 0
                    ) -> dict[str, dict[str, np.ndarray]]:
    """EMNIST's gzip.zip at ``path``: for each split (name -> (n_train, n_test)) the four
    members ``gzip/emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte.gz`` and its
    ``-mapping.txt``, images stored transposed and letters labelled 1-26, as NIST ships them.

    Returns split -> {"train_images", "train_labels", "test_images", "test_labels"}: the arrays
    softmaxlab should load (upright images, labels 0..K-1).
    """
    expected = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for k, (split, sizes) in enumerate(splits.items()):
            spec = SPECS[f"emnist-{split}"]
            arrays = {}
            for part, n in zip(("train", "test"), sizes):
                images, labels = split_arrays(spec, n, seed + 2 * k + (part == "test"))
                arrays[f"{part}_images"], arrays[f"{part}_labels"] = images, labels
                stored = np.ascontiguousarray(images.transpose(0, 2, 1))
                z.writestr(f"gzip/emnist-{split}-{part}-images-idx3-ubyte.gz",
                           gzip.compress(idx_bytes(stored), mtime=0))
                z.writestr(f"gzip/emnist-{split}-{part}-labels-idx1-ubyte.gz",
                           gzip.compress(idx_bytes((labels + spec.label_offset).astype(np.uint8)),
                                         mtime=0))
            z.writestr(f"gzip/emnist-{split}-mapping.txt", "0 48\n")
            expected[split] = arrays
    return expected


def accept_emnist(monkeypatch: pytest.MonkeyPatch, archive: Path, mirrors=("http://127.0.0.1:9/",)
                  ) -> None:
    """Make every emnist-* spec take ``archive`` (its md5) from ``mirrors`` in this test."""
    real = SPECS["emnist-letters"].archive
    fake = Archive(real.name, md5(archive.read_bytes()), real.prefix)
    for name, spec in list(SPECS.items()):
        if name.startswith("emnist-"):
            monkeypatch.setitem(SPECS, name, dataclasses.replace(spec, archive=fake,
                                                                 mirrors=tuple(mirrors)))


def make_qmnist_files(folder: Path, n_train: int = 40, n_test: int = 50, seed: int = 0
                      ) -> dict[str, np.ndarray]:
    """QMNIST's four files (.gz) in ``folder``: uint8 images, 2-D int32 labels of 8 columns
    (the class, then NIST's series, writer, ... as in the real files). Returns the arrays as
    stored (images (N, 28, 28), labels (N, 8))."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = SPECS["qmnist"]
    out = {}
    for part, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, classes = split_arrays(spec, n, s)
        rng = np.random.default_rng(s)
        labels = np.zeros((n, 8), np.int32)
        labels[:, 0] = classes
        labels[:, 1] = rng.choice([0, 1, 4], n)  # NIST HSF series
        labels[:, 2] = rng.integers(0, 2600, n)  # writer
        labels[:, 5] = rng.integers(0, 281770, n)  # global NIST index
        write_idx(folder / f"qmnist-{part}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"qmnist-{part}-labels-idx2-int.gz", labels)
        out[f"{part}_images"], out[f"{part}_labels"] = images, labels
    return out


def accept_gz(monkeypatch: pytest.MonkeyPatch, name: str, folder: Path, **changes) -> DatasetSpec:
    """Make the spec ``name`` accept ``folder``'s .gz files (their md5s as the published .gz
    md5s) in this test; ``changes`` replace other fields. Returns the spec."""
    spec = SPECS[name]
    md5s = {f: md5((folder / f"{f}.gz").read_bytes()) for f in spec.files.values()}
    spec = dataclasses.replace(spec, md5_gz=md5s, md5_raw={}, **changes)
    monkeypatch.setitem(SPECS, name, spec)
    return spec
