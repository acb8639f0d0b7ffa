"""The book's data names over softmaxlab's in-memory data: batches in a DataLoader's order.

Fashion-MNIST is found the way ``softmaxlab.data`` finds it (``$SOFTMAXLAB_DATA``, the user cache,
Debian's ``/usr/share/datasets/fashion-mnist``, the book's ``../data/FashionMNIST/raw``, else a
verified download; ``SOFTMAXLAB_OFFLINE=1`` never downloads), read once per process and kept as
uint8. A batch is gathered with one index and scaled to float32 in [0, 1] exactly as
torchvision's ``ToTensor`` does: no worker processes, no PIL image per example.

Every loader here draws from torch's global generator exactly as ``torch.utils.data.DataLoader``
does (a base seed per epoch, and the shuffle's seed), so under the same ``torch.manual_seed`` it
gives the same batches as the book's ``DataLoader`` over the same data, and leaves the generator
in the same state.
"""

from __future__ import annotations

import functools

import torch

from ..data import ImageDataset, get_spec, load_dataset, locate, text_labels
from ..data.datasets import resize_images
from ..errors import ConfigError

__all__ = ["get_dataloader_workers", "get_fashion_mnist_labels", "load_array",
           "load_data_fashion_mnist", "synthetic_data"]


def take_rows(t: torch.Tensor, index) -> torch.Tensor:
    """``t[index]`` as a fresh tensor (as a DataLoader gives), never a view of the data."""
    return t[index].clone() if isinstance(index, slice) else t.index_select(0, index)


class TensorLoader:
    """Batches ``[X, y]`` of in-memory data, re-iterable like a ``DataLoader``.

    ``take(index)`` returns the batch at ``index`` (a slice, or a tensor of indices when
    shuffled). Each ``iter()`` is an epoch: it draws a base seed and, when shuffling, the seed of
    a ``torch.randperm`` from torch's global generator, as ``DataLoader(shuffle=...)`` does.
    ``len()`` is the number of batches; ``dataset`` and ``batch_size`` as a DataLoader's.
    """

    def __init__(self, dataset, n: int, take, batch_size: int, shuffle: bool) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} is not allowed; it must be an int >= 1")
        self.dataset, self.n, self.take = dataset, n, take
        self.batch_size, self.shuffle = batch_size, shuffle

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_()  # the DataLoader iterator's base seed
        order = None
        if self.shuffle:  # RandomSampler: a fresh generator seeded from the global one
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed))
        return self._batches(order)

    def _batches(self, order):
        for start in range(0, self.n, self.batch_size):
            stop = min(start + self.batch_size, self.n)
            yield self.take(slice(start, stop) if order is None else order[start:stop])


class ImageSplit:
    """A split as torchvision's ``FashionMNIST(transform=ToTensor())`` presents it.

    ``split[i]`` is ``(X (1, H, W) float32 in [0, 1], label int)``; ``len()``; ``data`` uint8
    (N, 28, 28) and ``targets`` int64 (N,) as torchvision's; ``classes`` the text labels.
    ``resize`` (an int or (H, W), or None) resizes bilinearly (antialiased).
    """

    def __init__(self, split: ImageDataset, resize=None) -> None:
        self.split = split
        size = (resize, resize) if isinstance(resize, int) else resize
        self.resize = None if size is None or tuple(size) == split.image_shape else tuple(size)
        self.data, self.targets, self.classes = split.images, split.labels, split.class_names

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        X, y = self.batch(torch.tensor([index]))
        return X[0], int(y[0])

    def batch(self, index) -> list[torch.Tensor]:
        """``[X (B, 1, H, W) float32, y (B,) int64]`` at ``index`` (a slice or an index tensor)."""
        X = self.split.to_float(index)
        if self.resize is not None:
            X = resize_images(X, self.resize)
        return [X, take_rows(self.split.labels, index)]

    def loader(self, batch_size: int, shuffle: bool) -> TensorLoader:
        return TensorLoader(self, len(self), self.batch, batch_size, shuffle)


@functools.lru_cache(maxsize=1)
def _read_fashion_mnist(folder: str, stamp: tuple) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) from ``folder``; ``stamp`` (sizes and mtimes) re-reads changed files."""
    return load_dataset("fashion-mnist", data_dir=folder)


def fashion_mnist(resize=None) -> tuple[ImageSplit, ImageSplit]:
    """Fashion-MNIST's (train, test) splits, found as the module docstring says, read once."""
    if resize is not None:
        pair = (resize, resize) if isinstance(resize, int) else tuple(resize)
        if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                     for s in pair):
            raise ConfigError(f"resize={resize!r} is not allowed; give an int >= 1 (a square) "
                              "or a pair (H, W) of them")
    paths = locate(get_spec("fashion-mnist"))
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths.values())
    train, test = _read_fashion_mnist(str(paths["train_images"].parent), stamp)
    return ImageSplit(train, resize), ImageSplit(test, resize)


def get_dataloader_workers() -> int:
    """0: batches are sliced from tensors in memory, in this process (the book's 4 workers only
    add start-up time here, and break on 2-core machines, Windows and macOS)."""
    return 0


def load_data_fashion_mnist(batch_size: int, resize=None) -> tuple[TensorLoader, TensorLoader]:
    """(train_iter, test_iter): re-iterable loaders of batches X (B, 1, H, W), y (B,).

    X is float32 in [0, 1], y int64; H = W = 28, or ``resize`` (an int or (H, W); bilinear,
    antialiased). The training batches come in a fresh shuffled order each epoch, drawn from
    torch's generator as the book's DataLoader draws it (``torch.manual_seed`` makes it
    reproducible); the test batches keep file order.
    """
    train, test = fashion_mnist(resize or None)  # the book skips Resize for resize=0 too
    return train.loader(batch_size, shuffle=True), test.loader(batch_size, shuffle=False)


def get_fashion_mnist_labels(labels) -> list[str]:
    """Class indices (a tensor or a sequence of ints) -> their Fashion-MNIST names."""
    return text_labels(labels, get_spec("fashion-mnist").class_names)


def load_array(data_arrays, batch_size, is_train=True) -> TensorLoader:
    """Batches ``[X, y, ...]`` of the tensors ``data_arrays`` (same length), shuffled if
    ``is_train``: the book's ``DataLoader(TensorDataset(*data_arrays))``."""
    tensors = tuple(data_arrays)
    return TensorLoader(tensors, len(tensors[0]), lambda i: [take_rows(t, i) for t in tensors],
                        batch_size, is_train)


def synthetic_data(w, b, num_examples):
    """The book's y = Xw + b + noise: X (num_examples, len(w)) ~ N(0, 1), noise ~ N(0, 0.01);
    returns (X, y (num_examples, 1))."""
    X = torch.normal(0, 1, (num_examples, len(w)))
    y = torch.matmul(X, w) + b
    y += torch.normal(0, 0.01, y.shape)
    return X, y.reshape((-1, 1))
