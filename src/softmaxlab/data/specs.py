"""What each IDX dataset is: its files, class names, checksums, mirrors, usual folders and quirks.

The facts (URLs, md5s, class names, sizes) are those of torchvision's and TensorFlow Datasets'
loaders (``torchvision/datasets/mnist.py``, ``tensorflow_datasets/image_classification/mnist.py``).
Three datasets need more than reading four IDX files:

- **EMNIST** ships one zip (``gzip.zip``, all six splits) with one published md5, for the zip:
  it is verified, then each split's four ``gzip/<file>.gz`` members are taken out of it. Its
  images are stored transposed; they are loaded as a transposed view (no copy), upright.
  ``letters`` labels run 1-26 in the files (torchvision keeps them, with an unused class 0
  "N/A"); here they are 0-25, named a-z.
- **QMNIST**'s labels are a 2-D int32 IDX file (8 columns per image); column 0 is the class. Its
  test file holds 60,000 images; the test set here is the first 10,000 (torchvision's
  ``what="test10k"``): the reconstruction of MNIST's own test set, so results compare with
  MNIST's. The other 50,000 are not used.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from ..errors import ConfigError

# The four roles of an IDX dataset's files.
ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class Archive:
    """A zip that holds a dataset's files: mirrors serve ``name``, whose md5 is ``md5``; each
    file is the member ``<prefix><file>.gz``."""

    name: str  # e.g. "gzip.zip"
    md5: str  # of the zip as published
    prefix: str  # folder of the members inside the zip, e.g. "gzip/"


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find, verify, load and label one IDX dataset."""

    name: str  # CLI name, e.g. "fashion-mnist"
    class_names: tuple[str, ...]
    files: dict[str, str]  # role -> file name without ".gz" (torchvision's raw file names)
    md5_gz: dict[str, str]  # file name -> md5 of the official .gz file
    md5_raw: dict[str, str]  # file name -> md5 of the uncompressed file, where known
    mirrors: tuple[str, ...]  # base URLs, tried in order; each serves "<file>.gz" (or the archive)
    system_dirs: tuple[str, ...]  # folders a system package installs the files into
    system_package: str | None  # the Debian/Ubuntu package that does so
    torchvision_name: str  # torchvision's class and folder: <root>/<torchvision_name>/raw
    sizes: tuple[int, int] = (60000, 10000)  # (train, test) examples loaded, as published
    licence: str = ""  # the data's licence, as its authors state it
    homepage: str = ""
    folder: str = ""  # the cache sub-folder (default: name); EMNIST's splits share "emnist"
    archive: Archive | None = None  # the files come in this zip (EMNIST), not one by one
    transposed: bool = False  # images are stored transposed (EMNIST): loaded as a .mT view
    label_column: int | None = None  # labels are 2-D (QMNIST): the class is this column
    label_offset: int = 0  # the files' labels run from this value (EMNIST letters: 1)
    test_first: int | None = None  # the test set is the first N test examples (QMNIST: 10000)
    notes: tuple[str, ...] = field(default=())  # the quirks above, said in a line each

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

    @property
    def cache_folder(self) -> str:
        """The name of its folder in the user cache."""
        return self.folder or self.name

    @property
    def label_ndim(self) -> int:
        """The dimensions of its label files: 1, or 2 when the class is a column."""
        return 1 if self.label_column is None else 2


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
    licence="MIT",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
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
    licence="CC BY-SA 3.0",
    homepage="http://yann.lecun.com/exdb/mnist/",
)

KMNIST = DatasetSpec(
    name="kmnist",
    # one character for each row of Hiragana, as torchvision and TFDS name them
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    files=_FILES,
    md5_gz={
        "train-images-idx3-ubyte": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte": "7320c461ea6c1c855c0b718fb2a4b134",
    },
    md5_raw={},
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    system_dirs=(),
    system_package=None,
    torchvision_name="KMNIST",
    licence="CC BY-SA 4.0",
    homepage="http://codh.rois.ac.jp/kmnist/index.html.en",
)

EMNIST_ARCHIVE = Archive(name="gzip.zip", md5="58c8d27c78d21e728a6bc7b3cc06412e", prefix="gzip/")
# torchvision's class names: bymerge and balanced merge the lowercase letters that look like
# their capitals into them
_MERGED = set("cijklmopsuvwxyz")
_ALL = sorted(string.digits + string.ascii_letters)
_EMNIST_SPLITS = {  # split -> (class names, (train, test) sizes from TFDS)
    "balanced": (tuple(c for c in _ALL if c not in _MERGED), (112800, 18800)),
    "byclass": (tuple(_ALL), (697932, 116323)),
    "bymerge": (tuple(c for c in _ALL if c not in _MERGED), (697932, 116323)),
    "digits": (tuple(string.digits), (240000, 40000)),
    "letters": (tuple(string.ascii_lowercase), (88800, 14800)),
    "mnist": (tuple(string.digits), (60000, 10000)),
}


def _emnist(split: str) -> DatasetSpec:
    class_names, sizes = _EMNIST_SPLITS[split]
    prefix = f"emnist-{split}"
    notes = ("images stored transposed; loaded upright (a transposed view, no copy)",
             ("one zip (gzip.zip) holds all six EMNIST splits: verified by its md5 and kept "
              "beside the files, so the other splits need no second download"),
             ("licence: none stated by NIST (from NIST Special Database 19; cite Cohen et al. "
              "2017)"))
    if split == "letters":
        notes += (("labels 1-26 in the files, 0-25 here (a-z); torchvision keeps 1-26 with an "
                   "unused class 0"),)
    return DatasetSpec(
        name=f"emnist-{split}",
        class_names=class_names,
        files={"train_images": f"{prefix}-train-images-idx3-ubyte",
               "train_labels": f"{prefix}-train-labels-idx1-ubyte",
               "test_images": f"{prefix}-test-images-idx3-ubyte",
               "test_labels": f"{prefix}-test-labels-idx1-ubyte"},
        md5_gz={},  # NIST publishes the zip's md5 only
        md5_raw={},
        mirrors=("https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/",),
        system_dirs=(),
        system_package=None,
        torchvision_name="EMNIST",
        sizes=sizes,
        licence="not stated",
        homepage="https://www.nist.gov/itl/products-and-services/emnist-dataset",
        folder="emnist",
        archive=EMNIST_ARCHIVE,
        transposed=True,
        label_offset=1 if split == "letters" else 0,
        notes=notes,
    )


QMNIST = DatasetSpec(
    name="qmnist",
    class_names=MNIST.class_names,  # the digits, named as mnist's (torchvision: "0 - zero", ...)
    files={"train_images": "qmnist-train-images-idx3-ubyte",
           "train_labels": "qmnist-train-labels-idx2-int",
           "test_images": "qmnist-test-images-idx3-ubyte",
           "test_labels": "qmnist-test-labels-idx2-int"},
    md5_gz={
        "qmnist-train-images-idx3-ubyte": "ed72d4157d28c017586c42bc6afe6370",
        "qmnist-train-labels-idx2-int": "0058f8dd561b90ffdd0f734c6a30e5e4",
        "qmnist-test-images-idx3-ubyte": "1394631089c404de565df7b7aeaf9412",
        "qmnist-test-labels-idx2-int": "5b5b05890a5e13444e108efe57b788aa",
    },
    md5_raw={},
    mirrors=("https://raw.githubusercontent.com/facebookresearch/qmnist/master/",),
    system_dirs=(),
    system_package=None,
    torchvision_name="QMNIST",
    sizes=(60000, 10000),
    licence="BSD-style",
    homepage="https://github.com/facebookresearch/qmnist",
    label_column=0,
    test_first=10000,
    notes=("labels: 2-D int32 files (8 columns each), the class is column 0",
           ("test set: the first 10,000 of the test file's 60,000 images (torchvision's "
            "what='test10k'), the reconstruction of MNIST's test set; the other 50,000 are not "
            "used")),
)

SPECS: dict[str, DatasetSpec] = {s.name: s for s in (
    FASHION_MNIST, MNIST, KMNIST, *(_emnist(split) for split in _EMNIST_SPLITS), QMNIST)}


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset by its CLI name; ConfigError listing the known names otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(SPECS)}") from None
