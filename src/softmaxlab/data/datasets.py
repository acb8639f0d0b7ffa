"""Image datasets held in memory as uint8, and a fast batch iterator over them.

The images stay uint8 (47 MB for Fashion-MNIST's training set instead of 188 MB as float32); each
batch is gathered with one index and converted to float32 in [0, 1] on the fly, exactly as
torchvision's ``ToTensor`` would (``x / 255``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .idx import IDXError, parse_idx, read_bytes
from .sources import locate, verify
from .specs import DatasetSpec, get_spec


@dataclass
class ImageDataset:
    """A split of an image classification dataset.

    images: uint8 (N, H, W); labels: int64 (N,); class_names: one name per class index.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 3:
            raise ValueError(
                f"images must be uint8 of shape (N, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(
                f"{len(self.images)} images but labels of shape {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_features(self) -> int:
        return int(np.prod(self.image_shape))

    def subset(self, index: torch.Tensor | slice) -> ImageDataset:
        """The examples at ``index`` (a slice shares memory)."""
        return ImageDataset(self.images[index], self.labels[index], self.class_names, self.name)

    def to_float(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images (at ``index``) as float32 (B, 1, H, W) in [0, 1]."""
        x = self.images if index is None else self.images[index]
        return x.unsqueeze(1).to(torch.float32).div_(255.0)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        resize: int | tuple[int, int] | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(X float32 (B, 1, H, W) in [0, 1], y int64 (B,))``.

        With ``shuffle`` the order is one permutation drawn from ``(seed, epoch)``, so an epoch's
        batches are the same whenever that epoch is run (resuming gives the same batches).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} is not allowed; it must be >= 1")
        n = len(self)
        order = epoch_permutation(n, seed, epoch) if shuffle else None
        for start in range(0, n, batch_size):
            idx = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            x = self.to_float(idx)
            if resize is not None:
                x = resize_images(x, resize)
            yield x, self.labels[idx]


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of epoch ``epoch`` (0-based) of a run seeded ``seed``: a permutation of n."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.randperm(n, generator=g)


def resize_images(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) floats to ``size`` (an int gives a square)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True,
                                           align_corners=False)


class BatchLoader:
    """A re-iterable batch loader (like a DataLoader): each ``iter()`` is the next epoch.

    ``len()`` is the number of batches, ``.dataset`` the ImageDataset.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, shuffle: bool = False,
                 seed: int = 0, resize: int | tuple[int, int] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} is not allowed; it must be >= 1")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.resize, self.epoch = seed, resize, 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.dataset.batches(self.batch_size, self.shuffle, self.seed, epoch, self.resize)

    def __len__(self) -> int:
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size


def _read_split(spec: DatasetSpec, images_path: Path, labels_path: Path, split: str,
                verify_md5: bool) -> ImageDataset:
    arrays = []
    for path, ndim in ((images_path, 3), (labels_path, 1)):
        content = read_bytes(path)
        if verify_md5:
            verify(path, content, spec)
        arr = parse_idx(content, str(path))
        if arr.ndim != ndim:
            raise IDXError(f"{path}: expected {ndim} dimensions, the header says {arr.shape}")
        if arr.dtype != np.uint8:
            raise IDXError(f"{path}: expected uint8 data, the header says {arr.dtype}")
        arrays.append(arr)
    images, labels = arrays
    if len(images) != len(labels):
        raise IDXError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if len(labels) and int(labels.max()) >= spec.num_classes:
        raise IDXError(
            f"{labels_path}: label {int(labels.max())} is out of range for {spec.num_classes} "
            "classes"
        )
    return ImageDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)),
                        spec.class_names, f"{spec.name}/{split}")


def load_dataset(
    name: str = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    offline: bool | None = None,
    progress: bool | None = None,
    verify_md5: bool = True,
) -> tuple[ImageDataset, ImageDataset]:
    """Find (or download), verify and load a dataset; returns ``(train, test)``.

    See :func:`softmaxlab.data.sources.locate` for where the files are looked for.
    """
    spec = get_spec(name)
    paths = locate(spec, data_dir=data_dir, mirror=mirror, offline=offline, progress=progress)
    train = _read_split(spec, paths["train_images"], paths["train_labels"], "train", verify_md5)
    test = _read_split(spec, paths["test_images"], paths["test_labels"], "test", verify_md5)
    return train, test


def text_labels(labels: Sequence[int] | torch.Tensor, class_names: Sequence[str]) -> list[str]:
    """Class indices -> their names."""
    return [class_names[int(i)] for i in labels]
