"""What each IDX dataset is: its files, class names, checksums, mirrors and usual folders."""

from __future__ import annotations

from dataclasses import dataclass

# The four roles of an IDX dataset's files.
ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find, verify and label one IDX dataset."""

    name: str  # CLI name, e.g. "fashion-mnist"
    class_names: tuple[str, ...]
    files: dict[str, str]  # role -> file name without ".gz"
    md5: dict[str, tuple[str, ...]]  # file name -> accepted md5s (of the .gz or of the raw file)
    mirrors: tuple[str, ...]  # base URLs, tried in order; each serves "<file>.gz"
    system_dirs: tuple[str, ...]  # folders a system package installs the files into
    torchvision_name: str  # torchvision's folder: <root>/<torchvision_name>/raw
    sizes: dict[str, int]  # role -> number of examples, for the error messages and checks

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    class_names=(
        "t-shirt", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle boot",
    ),
    files=_FILES,
    # (official .gz md5, uncompressed md5): Debian re-gzipped the files, so the raw md5 is the one
    # that holds everywhere.
    md5={
        "train-images-idx3-ubyte": (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train-labels-idx1-ubyte": (
            "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
        "t10k-images-idx3-ubyte": (
            "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels-idx1-ubyte": (
            "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    torchvision_name="FashionMNIST",
    sizes={"train": 60000, "test": 10000},
)

MNIST = DatasetSpec(
    name="mnist",
    class_names=tuple(str(i) for i in range(10)),
    files=_FILES,
    # the official .gz md5s (as torchvision lists them)
    md5={
        "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873",),
        "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432",),
        "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3",),
        "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c",),
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    system_dirs=("/usr/share/datasets/mnist",),
    torchvision_name="MNIST",
    sizes={"train": 60000, "test": 10000},
)

SPECS: dict[str, DatasetSpec] = {s.name: s for s in (FASHION_MNIST, MNIST)}


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset by its CLI name; ValueError listing the known names otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(SPECS)}") from None
