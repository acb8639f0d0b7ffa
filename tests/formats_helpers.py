"""Real images written in every format softmaxlab reads, for tests/test_formats*.py.

The images are scikit-learn's 8x8 digits and a fixed subset of the installed Fashion-MNIST; the
writers use only numpy, Pillow and pyarrow (never softmaxlab's readers), so a test that reads the
files back compares softmaxlab against independent writers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from softmaxlab.data import ImageDataset, write_idx
from softmaxlab.models import weights
from softmaxlab.runner import Session, TrainConfig

FASHION_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                 "sandal", "shirt", "sneaker", "bag", "ankle boot")
# Hugging Face's fashion_mnist ClassLabel names
HF_FASHION_NAMES = ("T - shirt / top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot")


class Arrays:
    """One split as plain arrays: uint8 images (N, H, W), int64 labels (N,)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Arrays:
        return Arrays(self.images[index], self.labels[index])

    def dataset(self, class_names: tuple[str, ...]) -> ImageDataset:
        return ImageDataset(torch.from_numpy(self.images.copy()),
                            torch.from_numpy(self.labels.copy()), tuple(class_names))


def digits() -> tuple[Arrays, Arrays]:
    """scikit-learn's 8x8 digits (0-16) scaled to 0-255: the first 1400 train, the rest test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * 255 / 16).astype(np.uint8)
    all_ = Arrays(images, d.target)
    return all_.take(np.arange(1400)), all_.take(np.arange(1400, len(all_)))


def fashion_subset(real_dir: Path, n_train: int = 3000, n_test: int = 1000
                   ) -> tuple[Arrays, Arrays]:
    """The first ``n_train`` training and ``n_test`` test images of the real Fashion-MNIST."""
    from softmaxlab.data import read_idx

    out = []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = read_idx(real_dir / f"{prefix}-images-idx3-ubyte.gz")[:n]
        labels = read_idx(real_dir / f"{prefix}-labels-idx1-ubyte.gz")[:n]
        out.append(Arrays(np.ascontiguousarray(images), labels))
    return out[0], out[1]


# --------------------------------------------------------------------------- writers


def write_csv(path: Path, split: Arrays, pixel_start: int = 1) -> Path:
    """Kaggle's layout: ``label,pixel1,...,pixelN`` then one row per image."""
    flat = split.images.reshape(len(split), -1)
    header = "label," + ",".join(f"pixel{pixel_start + i}" for i in range(flat.shape[1]))
    np.savetxt(path, np.column_stack([split.labels, flat]), fmt="%d", delimiter=",",
               header=header, comments="")
    return path


def encode(image: np.ndarray, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **save)
    return buf.getvalue()


def write_image_folder(root: Path, split: Arrays, class_names: tuple[str, ...],
                       fmt: str = "PNG", **save) -> Path:
    """``root/<class name>/<index>.<ext>``, one file per image, index 5 digits (sorts as made)."""
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    for label in np.unique(split.labels):
        (root / class_names[label]).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(split.images, split.labels)):
        (root / class_names[label] / f"{i:05d}.{ext}").write_bytes(encode(image, fmt, **save))
    return root


def write_npz(path: Path, train: Arrays, test: Arrays | None = None, **extra) -> Path:
    arrays = {"x_train": train.images, "y_train": train.labels}
    if test is not None:
        arrays |= {"x_test": test.images, "y_test": test.labels}
    np.savez(path, **(arrays | extra))
    return path


def write_npy_dir(folder: Path, train: Arrays, test: Arrays | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"train": train} | ({"test": test} if test is not None else {})
    for split, arrays in parts.items():
        np.save(folder / f"x_{split}.npy", arrays.images)
        np.save(folder / f"y_{split}.npy", arrays.labels)
    return folder


def hf_metadata(class_names: tuple[str, ...]) -> dict[bytes, bytes]:
    """The ``huggingface`` schema metadata of an image classification dataset."""
    features = {"image": {"_type": "Image"},
                "label": {"names": list(class_names), "_type": "ClassLabel"}}
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


def write_parquet(path: Path, split: Arrays, class_names: tuple[str, ...] | None = None,
                  fmt: str = "PNG", image_column: str = "image", label_column: str = "label",
                  blobs: list | None = None) -> Path:
    """Hugging Face's layout: ``image`` {bytes, path} structs, an int64 ``label``; with
    ``class_names`` the ``huggingface`` metadata naming them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if blobs is None:
        blobs = [encode(image, fmt) for image in split.images]
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        image_column: pa.array([{"bytes": b, "path": None} for b in blobs], type=struct),
        label_column: pa.array(split.labels, type=pa.int64()),
    })
    if class_names is not None:
        table = table.replace_schema_metadata(hf_metadata(class_names))
    pq.write_table(table, path)
    return path


def write_idx_dir(folder: Path, train: Arrays, test: Arrays | None = None, gz: bool = True
                  ) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    parts = {"train": train} | ({"t10k": test} if test is not None else {})
    for prefix, arrays in parts.items():
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", arrays.images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", arrays.labels.astype(np.uint8))
    return folder


# --------------------------------------------------------------------------- training


def train(train: ImageDataset, test: ImageDataset, epochs: int = 2, batch_size: int = 64
          ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Train from the chapter's start: ``(W, b, test accuracy)``."""
    session = Session(TrainConfig(epochs=epochs, batch_size=batch_size, seed=0), train, test)
    session.fit()
    W, b = weights(session.model)
    return W.clone(), b.clone(), session.evaluate(test)
