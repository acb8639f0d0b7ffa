"""Image datasets held in memory as uint8, and a fast batch iterator over them.

The images stay uint8 (47 MB for Fashion-MNIST's training set instead of 188 MB as float32); each
batch is gathered with one index and converted to float32 in [0, 1] on the fly, exactly as
torchvision's ``ToTensor`` would (``x / 255``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError, os_fault
from .idx import IDXError, is_gzip, parse_idx, read_bytes
from .rows import idx_shape, map_idx, part_of, read_idx_rows
from .sources import REPLACE_HINT, locate, md5_of_file, verify
from .specs import DatasetSpec, get_spec

Size = int | tuple[int, int]


@dataclass
class ImageDataset:
    """A split of an image classification dataset.

    images: uint8 (N, H, W), possibly a strided view (EMNIST's are a transposed one); labels:
    int64 (N,) in [0, len(class_names)); class_names: one name per class index; name: e.g.
    ``"fashion-mnist/train"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 3:
            raise DataError(
                f"images must be uint8 of shape (N, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise DataError(
                f"labels must be int64 of shape ({len(self.images)},) for {len(self.images)} "
                f"images, got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if len(self.labels) and not (
            0 <= int(self.labels.min()) and int(self.labels.max()) < len(self.class_names)
        ):
            raise DataError(
                f"labels run from {int(self.labels.min())} to {int(self.labels.max())}, but there "
                f"are {len(self.class_names)} class names (labels must be 0 to "
                f"{len(self.class_names) - 1})"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of each image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_features(self) -> int:
        """H * W: the length of a flattened image."""
        return self.image_shape[0] * self.image_shape[1]

    def to(self, device: torch.device | str) -> ImageDataset:
        """The same split with its tensors on ``device`` (itself if they are there already)."""
        device = torch.device(device)
        if self.images.device == device:
            return self
        return ImageDataset(self.images.to(device), self.labels.to(device), self.class_names,
                            self.name)

    def subset(self, index: torch.Tensor | slice) -> ImageDataset:
        """The examples at ``index`` (a slice shares memory)."""
        return ImageDataset(self.images[index], self.labels[index], self.class_names, self.name)

    def to_float(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images (at ``index``) as float32 (B, 1, H, W) in [0, 1]: exactly ``x / 255``.

        Contiguous even when ``images`` is a view (EMNIST's transposed images), so the model's
        products see the same memory layout, and give the same floats, either way.
        """
        if index is None:
            x = self.images
        elif isinstance(index, torch.Tensor):
            x = self.images.index_select(0, index)  # ~10x faster than images[index] for a batch
        else:
            x = self.images[index]
        out = torch.empty((x.shape[0], 1, *x.shape[1:]), dtype=torch.float32, device=x.device)
        return torch.div(x.unsqueeze(1), 255.0, out=out)  # convert and scale in one pass

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        resize: Size | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(X float32 (B, 1, H, W) in [0, 1], y int64 (B,))``; the last batch may be short.

        Without ``shuffle`` the order is the dataset's. With it the order is one permutation
        drawn from ``(seed, epoch)``, so an epoch's batches are the same whenever that epoch is
        run (resuming gives the same batches). ``resize`` (an int for a square, or (H, W))
        resizes X bilinearly. Each y is the caller's to change (a slice of a fresh tensor).
        """
        _check_batch_size(batch_size)
        if resize is not None:
            _check_size(resize)
        n = len(self)
        order = epoch_permutation(n, seed, epoch, self.images.device) if shuffle else None
        # the epoch's labels in one gather (or one copy): each batch's y is a slice of them
        labels = self.labels.clone() if order is None else self.labels.index_select(0, order)
        ys = labels.split(batch_size)  # all the batches' views in one call
        for i, y in enumerate(ys):
            start = i * batch_size
            idx = slice(start, start + batch_size) if order is None else order[start:start + len(y)]
            x = self.to_float(idx)
            if resize is not None:
                x = resize_images(x, resize)
            yield x, y


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not allowed; it must be an int >= 1")


def _check_size(size: Size) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                 for s in pair):
        raise ConfigError(f"resize={size!r} is not allowed; give an int >= 1 (a square) or a "
                         "pair (H, W) of them")
    return pair  # type: ignore[return-value]


def epoch_permutation(n: int, seed: int, epoch: int,
                      device: torch.device | str | None = None,
                      stream: int | None = None) -> torch.Tensor:
    """The shuffle of epoch ``epoch`` (0-based) of a run seeded ``seed``: a permutation of n.

    Depends only on ``(n, seed, epoch)`` and ``stream`` (drawn on the CPU, then moved to
    ``device``); both seed and epoch must be >= 0. ``stream`` draws an independent shuffle for
    the same epoch (each rank's of its shard).
    """
    for what, value in (("seed", seed), ("epoch", epoch)):
        if value < 0:
            raise ConfigError(f"{what}={value} is not allowed; it must be >= 0")
    entropy = [seed, epoch] if stream is None else [seed, epoch, stream]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.randperm(n, generator=g, device="cpu").to(device or "cpu")


def resize_images(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Bilinear (antialiased) resize of float (B, C, H, W) to ``size`` (an int gives a square)."""
    return torch.nn.functional.interpolate(x, size=_check_size(size), mode="bilinear",
                                           antialias=True, align_corners=False)


class BatchLoader:
    """A re-iterable batch loader (like a DataLoader): each ``iter()`` is the next epoch.

    ``len()`` is the number of batches, ``.dataset`` the ImageDataset.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, shuffle: bool = False,
                 seed: int = 0, resize: Size | None = None) -> None:
        _check_batch_size(batch_size)
        if resize is not None:
            _check_size(resize)
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.resize, self.epoch = seed, resize, 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.dataset.batches(self.batch_size, self.shuffle, self.seed, epoch, self.resize)

    def __len__(self) -> int:
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size


def _read_array(path: Path, spec: DatasetSpec, ndim: int, verify_md5: bool,
                part: tuple[int, int] | None = None) -> np.ndarray:
    """One found file of ``spec``: parsed, checked (ndim, dtype, md5) and returned.

    Images and 1-D labels must be uint8; 2-D labels (a class column, QMNIST's) any integer type.
    An uncompressed file is memory-mapped (``rows.map_idx``: no copy in memory, its md5 taken
    from the file); ``part`` (rank, world_size) keeps only that rank's share of the rows (a view
    of the mapped file, or the rows kept as a gzipped file streams by).
    """
    content, content_md5 = None, None
    try:
        try:
            if not is_gzip(path):
                arr = map_idx(path)
                if verify_md5:
                    content_md5 = md5_of_file(path)
                if part is not None:
                    arr = arr[slice(*part_of(len(arr), *part))]
            elif part is not None:
                start, stop = part_of(idx_shape(path)[0], *part)
                arr, _, content_md5 = read_idx_rows(path, start, stop, md5=verify_md5)
            else:
                content = read_bytes(path)
                arr = parse_idx(content, str(path))
        except OSError as e:
            raise os_fault(path, e, "read", "check the file and its permissions") from None
        if arr.ndim != ndim:
            raise IDXError(f"{path}: expected {ndim} dimensions, the header says {arr.ndim} "
                           f"{arr.shape}")
        if ndim == 2 and not np.issubdtype(arr.dtype, np.integer):
            raise IDXError(f"{path}: expected integer labels, the header says {arr.dtype}")
        if ndim != 2 and arr.dtype != np.uint8:
            raise IDXError(f"{path}: expected uint8 data, the header says {arr.dtype}")
    except IDXError as e:
        raise IDXError(f"{e}: the file is damaged or is not {spec.name}'s; {REPLACE_HINT}") from None
    if verify_md5:
        verify(path, content, spec, content_md5)
    return arr


def _class_labels(spec: DatasetSpec, labels: np.ndarray, path: Path) -> np.ndarray:
    """The labels of a file of ``spec`` as class indices 0..K-1 (int64): its class column
    (``label_column``), less ``label_offset``; IDXError naming the file if one is out of range."""
    if spec.label_column is not None:
        if labels.shape[1] <= spec.label_column:
            raise IDXError(f"{path}: {labels.shape[1]} label columns, the class is column "
                           f"{spec.label_column}: the file is damaged or is not {spec.name}'s")
        labels = labels[:, spec.label_column]
    labels = labels.astype(np.int64) - spec.label_offset
    low, high = spec.label_offset, spec.label_offset + spec.num_classes - 1
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < spec.num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise IDXError(
            f"{path}: label {bad + spec.label_offset} is out of range: {spec.name} has "
            f"{spec.num_classes} classes (labels {low} to {high})"
        )
    return labels


def _make_split(spec: DatasetSpec, images: np.ndarray, labels: np.ndarray, images_path: Path,
                labels_path: Path, split: str) -> ImageDataset:
    """A split of ``spec`` from its files' arrays, its quirks undone: the class column and
    label offset, the test set's first ``test_first`` examples, transposed images (a view)."""
    if len(images) != len(labels):
        raise IDXError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; "
            "the two files must come from the same dataset and split"
        )
    if split == "test" and spec.test_first is not None:
        # a copy: the rest of the file's buffer is then freed
        images, labels = images[:spec.test_first].copy(), labels[:spec.test_first]
    labels = _class_labels(spec, labels, labels_path)
    if not images.flags.writeable:
        images = images.copy()
    # the images share the memory the file was read into (a writable bytearray)
    x = torch.from_numpy(images)
    if spec.transposed:
        x = x.transpose(1, 2)  # upright, as a view: batches are gathered contiguous
    return ImageDataset(x, torch.from_numpy(labels), spec.class_names, f"{spec.name}/{split}")


def load_dataset(
    name: str = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    offline: bool | None = None,
    progress: bool | None = None,
    verify_md5: bool = True,
    shard: tuple[int, int] | None = None,
) -> tuple[ImageDataset, ImageDataset]:
    """Find (or download), verify and load a dataset into memory; returns ``(train, test)``.

    See :func:`softmaxlab.data.sources.locate` for where the files are looked for and the
    arguments. Uncompressed files are memory-mapped. ``shard`` (rank, world_size): the training
    split holds only that rank's contiguous share of the rows (``rows.part_of``), read without
    holding the others (see ``softmaxlab.data.rows``); the test split is whole. Raises
    DataNotFoundError, IDXError (a damaged file) or ChecksumError, each naming the file or
    folders concerned.
    """
    spec = get_spec(name)
    paths = locate(spec, data_dir=data_dir, mirror=mirror, offline=offline, progress=progress)
    # the four files are read at once: gunzip and md5 release the GIL, so this takes about as long
    # as the training images alone; an error is raised for the first file in this order
    roles = {"train_images": 3, "test_images": 3, "train_labels": spec.label_ndim,
             "test_labels": spec.label_ndim}
    if shard is not None:  # the shares of the two files must be of the same rows
        n_images, n_labels = (idx_shape(paths[r])[0] for r in ("train_images", "train_labels"))
        if n_images != n_labels:
            raise IDXError(f"{paths['train_images']} has {n_images} images but "
                           f"{paths['train_labels']} has {n_labels} labels; the two files must "
                           f"come from the same dataset and split; {REPLACE_HINT}")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {role: pool.submit(_read_array, paths[role], spec, ndim, verify_md5,
                                     shard if role.startswith("train") else None)
                   for role, ndim in roles.items()}
        arrays = {role: futures[role].result() for role in roles}
    train, test = (_make_split(spec, arrays[f"{split}_images"], arrays[f"{split}_labels"],
                               paths[f"{split}_images"], paths[f"{split}_labels"], split)
                   for split in ("train", "test"))
    if train.image_shape != test.image_shape:
        raise IDXError(
            f"{paths['train_images']} holds {train.image_shape} images but "
            f"{paths['test_images']} holds {test.image_shape} ones; both splits must have the "
            "same image size"
        )
    return train, test


def text_labels(labels: Sequence[int] | torch.Tensor, class_names: Sequence[str]) -> list[str]:
    """Class indices (N,) -> their N names."""
    out = []
    for i in labels:
        if not 0 <= int(i) < len(class_names):
            raise ValueError(f"label {int(i)} is out of range for {len(class_names)} classes")
        out.append(class_names[int(i)])
    return out
