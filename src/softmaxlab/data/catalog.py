"""The named datasets at a glance, and what a loaded dataset holds (``softmaxlab data list``
and ``info``).

:func:`catalog` says for every named dataset where it is (or would be downloaded to) without
downloading anything; :func:`describe` gives the shape, classes, per-class counts and a checksum
of the arrays of a loaded ``(train, test)`` pair, whatever it was read from, so an exported copy
read back can be compared with the original; :func:`file_checks` says which published md5 each
file of a named dataset matches.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .datasets import ImageDataset
from .idx import is_gzip, read_bytes
from .sources import Location, md5_of, md5_of_file, where
from .specs import ROLES, SPECS, DatasetSpec

DIGEST_CHUNK = 4096  # images hashed at a time (a strided view is copied this much at a time)


@dataclass(frozen=True)
class Entry:
    """A named dataset and where it is (``location.found``) or would go (``location.target``)."""

    spec: DatasetSpec
    location: Location

    @property
    def here(self) -> bool:
        """Whether its files are on this machine (or its archive, to take them from)."""
        return self.location.found is not None or self.location.archive is not None


def catalog(data_dir: str | os.PathLike | None = None) -> list[Entry]:
    """Every named dataset, in the order of ``SPECS``, with where it is; downloads nothing."""
    return [Entry(spec, where(spec, data_dir)) for spec in SPECS.values()]


def array_digest(ds: ImageDataset) -> str:
    """``sha256:<hex>`` of a split's arrays: its images as C-ordered uint8 (N, H, W) bytes (as
    shown: EMNIST's upright), then its labels as little-endian int64.

    Two splits have the same digest iff they hold the same images and labels in the same order,
    whatever files they were read from.
    """
    h = hashlib.sha256()
    images = ds.images.cpu()
    for i in range(0, len(images), DIGEST_CHUNK):
        h.update(np.ascontiguousarray(images[i:i + DIGEST_CHUNK].numpy()).tobytes())
    h.update(ds.labels.cpu().numpy().astype("<i8").tobytes())
    return f"sha256:{h.hexdigest()}"


def describe(train: ImageDataset, test: ImageDataset) -> dict:
    """What a ``(train, test)`` pair holds, JSON-able::

        {"image_shape": [H, W], "dtype": "uint8", "num_classes": K, "class_names": [...],
         "splits": {"train": {"n": N, "per_class": [n_0, ...], "digest": "sha256:..."},
                    "test": {...}}}
    """
    k = train.num_classes
    splits = {}
    for split, ds in (("train", train), ("test", test)):
        counts = torch.bincount(ds.labels.cpu(), minlength=k)
        splits[split] = {"n": len(ds), "per_class": counts.tolist(), "digest": array_digest(ds)}
    return {"image_shape": list(train.image_shape), "dtype": "uint8", "num_classes": k,
            "class_names": list(train.class_names), "splits": splits}


def file_checks(spec: DatasetSpec, paths: dict[str, Path]) -> list[dict]:
    """Each file of ``spec`` (role -> path, as ``locate`` gives) with its md5 and the published
    md5 it matches: ``[{"role", "path", "md5", "matches"}]``, where ``matches`` is ``"gz"`` (the
    official .gz file's), ``"raw"`` (the uncompressed content's), ``"archive"`` (no md5 of its
    own: it comes out of the verified archive) or ``None`` (a file no published md5 covers, or
    one that fails its md5: loading it says so).
    """
    out = []
    for role in ROLES:
        path, name = paths[role], spec.files[role]
        md5 = md5_of_file(path)
        gz = is_gzip(path)
        matches = None
        if gz and spec.md5_gz.get(name) == md5:
            matches = "gz"
        elif name in spec.md5_raw and md5_of(read_bytes(path) if gz else path.read_bytes()) \
                == spec.md5_raw[name]:
            matches = "raw"
        elif spec.archive is not None and not spec.md5_gz and not spec.md5_raw:
            matches = "archive"
        out.append({"role": role, "path": str(path), "md5": md5, "matches": matches})
    return out

