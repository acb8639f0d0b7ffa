"""Tests for softmaxlab.data.datasets: loading a dataset, ImageDataset, batches, the real data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import NAMES, make_idx_files, make_spec, raw_md5s, register
from softmaxlab.data import (
    BatchLoader,
    IDXError,
    ImageDataset,
    epoch_permutation,
    load_dataset,
    read_idx,
    text_labels,
    write_idx,
)
from softmaxlab.data.specs import FASHION_MNIST

pytestmark = pytest.mark.usefixtures("isolated_data_env")


# --------------------------------------------------------------------------- loading a dataset


def test_load_tiny_dataset(tmp_path, monkeypatch):
    folder = make_idx_files(tmp_path / "d", n_train=30, n_test=20)
    register(monkeypatch, make_spec(tmp_path, md5_raw=raw_md5s(folder)))
    train, test = load_dataset("tiny", data_dir=folder)
    assert (len(train), len(test)) == (30, 20)
    assert train.images.dtype == torch.uint8 and train.images.shape == (30, 28, 28)
    assert train.labels.dtype == torch.int64
    assert train.labels.tolist() == [i % 10 for i in range(30)]
    np.testing.assert_array_equal(train.images.numpy(),
                                  read_idx(folder / "train-images-idx3-ubyte.gz"))
    assert train.name == "tiny/train" and test.name == "tiny/test"
    assert train.class_names == FASHION_MNIST.class_names


def test_load_uncompressed_files(tmp_path, monkeypatch):
    folder = make_idx_files(tmp_path / "d", gz=False)
    register(monkeypatch, make_spec(tmp_path, md5_raw=raw_md5s(folder)))
    train, test = load_dataset("tiny", data_dir=folder, offline=True)
    assert (len(train), len(test)) == (120, 60)


def _replace(folder: Path, name: str, arr: np.ndarray) -> Path:
    """Replace ``folder``'s ``<name>.gz`` by an IDX file holding ``arr``; returns its path."""
    (folder / f"{name}.gz").unlink()
    return write_idx(folder / f"{name}.gz", arr)


@pytest.mark.parametrize("case, message", [
    ("images are 1-D", "expected 3 dimensions, the header says 1"),
    ("labels are 2-D", "expected 1 dimensions, the header says 2"),
    ("images are float32", "expected uint8 data, the header says float32"),
    ("counts disagree", "has 120 images but .* has 119 labels"),
    ("label out of range", "label 10 is out of range: tiny has 10 classes"),
    ("test images are 32x32", r"holds \(28, 28\) images but .* holds \(32, 32\)"),
])
def test_dataset_level_checks_name_the_file(tmp_path, monkeypatch, case, message):
    folder = make_idx_files(tmp_path / "d")
    labels = (np.arange(120) % 10).astype(np.uint8)
    broken = {
        "images are 1-D": ("train-images-idx3-ubyte", np.zeros(120, np.uint8)),
        "labels are 2-D": ("train-labels-idx1-ubyte", labels.reshape(120, 1)),
        "images are float32": ("train-images-idx3-ubyte", np.zeros((120, 28, 28), np.float32)),
        "counts disagree": ("train-labels-idx1-ubyte", labels[:119]),
        "label out of range": ("train-labels-idx1-ubyte", np.where(labels == 3, 10, labels)),
        "test images are 32x32": ("t10k-images-idx3-ubyte", np.zeros((60, 32, 32), np.uint8)),
    }
    name, arr = broken[case]
    path = _replace(folder, name, arr)
    register(monkeypatch, make_spec(tmp_path))  # no md5s: only the structure is checked
    with pytest.raises(IDXError, match=message) as err:
        load_dataset("tiny", data_dir=folder, offline=True)
    assert str(path) in str(err.value)


def test_truncated_file_in_a_dataset_says_what_to_do(tmp_path, monkeypatch):
    folder = make_idx_files(tmp_path / "d", gz=False)
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    register(monkeypatch, make_spec(tmp_path, md5_raw=raw_md5s(folder)))
    with pytest.raises(IDXError, match="payload truncated") as err:
        load_dataset("tiny", data_dir=folder, offline=True)
    assert str(path) in str(err.value) and "delete or replace it" in str(err.value)


# --------------------------------------------------------------------------- batches


@pytest.fixture
def tiny(tiny_idx_dir) -> tuple[ImageDataset, ImageDataset]:
    """conftest's tiny dataset (120 train / 60 test 28x28 images) loaded from its IDX files."""
    return load_dataset(data_dir=tiny_idx_dir, offline=True)


def test_batches_shapes_dtypes_and_values(tiny):
    train, _ = tiny
    xs, ys = zip(*train.batches(50))
    assert [len(y) for y in ys] == [50, 50, 20]  # the last batch is partial
    for x, y in zip(xs, ys):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert y.dtype == torch.int64 and y.shape == (len(x),)
    x = torch.cat(xs)
    assert torch.equal(x, train.images.unsqueeze(1).float() / 255)  # exactly ToTensor's x / 255
    assert x.min() == 0 and x.max() == 1
    assert torch.equal(torch.cat(ys), train.labels)


def test_test_order_is_unchanged(tiny):
    _, test = tiny
    loader = BatchLoader(test, 16)
    assert len(loader) == 4
    for _ in range(2):
        assert torch.equal(torch.cat([y for _, y in loader]), test.labels)


def test_shuffle_is_one_permutation_per_seed_and_epoch(tiny):
    train, _ = tiny

    def epoch(seed: int, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*train.batches(32, shuffle=True, seed=seed, epoch=e))
        return torch.cat(xs), torch.cat(ys)

    x0, y0 = epoch(0, 0)
    order = epoch_permutation(len(train), 0, 0)
    assert torch.equal(y0, train.labels[order])
    assert torch.equal(x0, train.to_float(order))
    assert sorted(order.tolist()) == list(range(len(train)))
    assert torch.equal(epoch(0, 0)[1], y0)  # the same epoch again: the same batches
    assert not torch.equal(epoch(0, 1)[0], x0)  # the next epoch: another order
    assert not torch.equal(epoch(1, 0)[0], x0)  # another seed: another order


def test_batch_loader_advances_the_epoch(tiny):
    train, _ = tiny
    loader = BatchLoader(train, 40, shuffle=True, seed=5)
    first = torch.cat([y for _, y in loader])
    second = torch.cat([y for _, y in loader])
    assert torch.equal(first, train.labels[epoch_permutation(120, 5, 0)])
    assert torch.equal(second, train.labels[epoch_permutation(120, 5, 1)])
    assert loader.epoch == 2


def test_changing_a_batch_leaves_the_dataset_alone(tiny):
    train, _ = tiny
    before = train.labels.clone()
    for x, y in train.batches(64):
        x += 1
        y += 1
    assert torch.equal(train.labels, before)


def test_resize(tiny):
    train, _ = tiny
    x, y = next(iter(BatchLoader(train, 8, resize=32)))
    assert x.shape == (8, 1, 32, 32) and x.dtype == torch.float32 and y.shape == (8,)
    x, _ = next(train.batches(8, resize=(14, 20)))
    assert x.shape == (8, 1, 14, 20)
    assert -1e-4 <= x.min() and x.max() <= 1 + 1e-4
    x, _ = next(train.batches(8, resize=28))
    assert torch.allclose(x, train.to_float(slice(0, 8)))


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size=0 is not allowed"),
    ({"batch_size": 2.5}, "batch_size=2.5 is not allowed"),
    ({"batch_size": 8, "resize": 0}, "resize=0 is not allowed"),
    ({"batch_size": 8, "resize": (28, 28, 1)}, r"resize=\(28, 28, 1\) is not allowed"),
])
def test_batch_options_are_validated(tiny, kwargs, message):
    train, _ = tiny
    with pytest.raises(ValueError, match=message):
        BatchLoader(train, **kwargs)
    with pytest.raises(ValueError, match=message):
        next(train.batches(**kwargs))


def test_epoch_permutation_is_stable_and_validated():
    assert torch.equal(epoch_permutation(50, 3, 2), epoch_permutation(50, 3, 2))
    with pytest.raises(ValueError, match="seed=-1 is not allowed"):
        epoch_permutation(10, -1, 0)


def test_image_dataset_validates_its_tensors():
    images = torch.zeros(4, 28, 28, dtype=torch.uint8)
    names = ("a", "b")
    with pytest.raises(ValueError, match="images must be uint8"):
        ImageDataset(images.float(), torch.zeros(4, dtype=torch.int64), names)
    with pytest.raises(ValueError, match="labels must be int64 of shape"):
        ImageDataset(images, torch.zeros(3, dtype=torch.int64), names)
    with pytest.raises(ValueError, match="labels run from 0 to 2, but there are 2 class names"):
        ImageDataset(images, torch.tensor([0, 1, 2, 0]), names)
    ds = ImageDataset(images, torch.tensor([0, 1, 1, 0]), names)
    assert ds.subset(slice(1, 3)).labels.tolist() == [1, 1]
    assert (ds.num_features, ds.image_shape, ds.num_classes) == (784, (28, 28), 2)


def test_text_labels():
    names = FASHION_MNIST.class_names
    assert text_labels(torch.tensor([0, 9]), names) == ["t-shirt", "ankle boot"]
    with pytest.raises(ValueError, match="label 10 is out of range for 10 classes"):
        text_labels([10], names)


# --------------------------------------------------------------------------- the real dataset


@pytest.fixture(scope="module")
def real(real_data_dir) -> tuple[ImageDataset, ImageDataset]:
    return load_dataset(data_dir=real_data_dir, offline=True)


def test_real_fashion_mnist(real, real_data_dir):
    train, test = real
    assert (len(train), len(test)) == (60000, 10000)
    assert train.image_shape == test.image_shape == (28, 28)
    assert train.labels.bincount().tolist() == [6000] * 10
    assert test.labels.bincount().tolist() == [1000] * 10
    assert train.images.dtype == torch.uint8


def test_real_files_match_the_published_uncompressed_md5s(real_data_dir):
    from softmaxlab.data.idx import read_bytes

    for name in NAMES:
        content = read_bytes(real_data_dir / f"{name}.gz")
        assert hashlib.md5(content).hexdigest() == FASHION_MNIST.md5_raw[name]


def test_an_unreadable_dataset_file_is_a_clear_error(tiny_idx_dir, monkeypatch):
    """A file that exists but cannot be read (an I/O error, no permission): the project's error,
    naming the file."""
    import errno

    from softmaxlab.data import datasets
    from softmaxlab.errors import SystemFault

    def failing(path, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(datasets, "read_bytes", failing)
    with pytest.raises(SystemFault, match="cannot read .*train-images-idx3-ubyte.gz: "
                                          "Input/output error; check the file"):
        load_dataset(data_dir=tiny_idx_dir)
