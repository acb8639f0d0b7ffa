"""What each IDX dataset is: its files, class names, checksums, mirrors and usual folders."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

# The four roles of an IDX dataset's files.
ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find, verify and label one IDX dataset."""

    name: str  # CLI name, e.g. "fashion-mnist"
    class_names: tuple[str, ...]
    files: dict[str, str]  # role -> file name without ".gz"
    md5_gz: dict[str, str]  # file name -> md5 of the official .gz file
    md5_raw: dict[str, str]  # file name -> md5 of the uncompressed file, where known
    mirrors: tuple[str, ...]  # base URLs, tried in order; each serves "<file>.gz"
    system_dirs: tuple[str, ...]  # folders a system package installs the files into
    system_package: str | None  # the Debian/Ubuntu package that does so
    torchvision_name: str  # torchvision's folder: <root>/<torchvision_name>/raw

    def __post_init__(self) -> None:
        if set(self.files) != set(ROLES):
            raise ValueError(f"{self.name}: files must name exactly the roles {ROLES}, got "
                             f"{sorted(self.files)}")
        unknown = (set(self.md5_gz) | set(self.md5_raw)) - set(self.files.values())
        if unknown:
            raise ValueError(f"{self.name}: md5s given for files it does not have: {sorted(unknown)}")

    @property
    def num_classes(self) -> int:
        """The number of classes (labels run from 0 to num_classes - 1)."""
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
    md5_gz={
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    # Debian re-gzipped the files (other .gz md5s), so the uncompressed md5 is the one that holds
    # for every copy.
    md5_raw={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    system_package="dataset-fashion-mnist",
    torchvision_name="FashionMNIST",
)

MNIST = DatasetSpec(
    name="mnist",
    class_names=tuple(str(i) for i in range(10)),
    files=_FILES,
    # the official .gz md5s (as torchvision lists them); the uncompressed files are not checked
    md5_gz={
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    md5_raw={},
    # the official site (yann.lecun.com) answers 403 to downloads; torchvision's mirror comes first
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    system_dirs=(),
    system_package=None,
    torchvision_name="MNIST",
)

SPECS: dict[str, DatasetSpec] = {s.name: s for s in (FASHION_MNIST, MNIST)}


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset by its CLI name; ValueError listing the known names otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(SPECS)}") from None
