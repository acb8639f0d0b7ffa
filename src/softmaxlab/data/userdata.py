"""Your own data: a dataset spec loaded into train and test splits, with a record to reload it.

**Spec syntax.** A spec is one of

- ``fashion-mnist`` or ``mnist``: a named dataset (:func:`softmaxlab.data.load_dataset`, with
  its md5s and the ``--data-dir`` lookup; not handled here);
- ``KIND:PATH`` with KIND one of :data:`KINDS` — ``idx:DIR``, ``csv:FILE``, ``folder:DIR``,
  ``npz:FILE``, ``npy:DIR``, ``parquet:FILE`` (layouts: :mod:`softmaxlab.data.formats`);
  everything after the first colon is the path, so it may hold colons and commas;
- a bare path, recognised by its extension (``.csv``, ``.csv.gz``, ``.npz``, ``.parquet``,
  ``.pq``) or, for a folder, by its contents: the IDX file names -> idx, ``x_train.npy`` ->
  npy, sub-folders -> folder. A named dataset wins over a folder of the same name; write
  ``./fashion-mnist`` or ``folder:fashion-mnist`` for the folder.

A separate test set is a second spec, :attr:`DataOptions.test_data` (``--test-data``): its own
test split if it has one (an IDX folder's ``t10k`` files, an npz's ``x_test``, a folder's
``test/``), else all of it; the first path's own test split is then not read. Without either,
a stratified hold-out of :attr:`DataOptions.test_split` (default 0.2) of the training data is
the test set, drawn from :attr:`DataOptions.split_seed` (see :func:`stratified_split`).

**Classes.** Folder names (sorted), or the ``names`` of a Parquet file's Hugging Face
``ClassLabel``; otherwise ``"0"`` to ``"K-1"`` with K the largest training label + 1. Test
labels must be training classes (by name where both sides name them). The number of classes,
the image size and the class names all come from the data.

**The record** (:func:`load_data_spec` returns it; JSON-able, for the run's ``config.json``)::

    {"version": 1,
     "sources": {"train": {"spec": "csv:/abs/train.csv", "kind": "csv", "path": "/abs/train.csv",
                           "checksum": "sha256:<hex>", "files": 1},
                 "test": {...} or absent},          # present when --test-data was given
     "test_from": "test-data" | "data" | "held-out",  # where the test set came from
     "options": {DataOptions, resolved: test_data absolute, test_split the fraction held out
                 (or null), image_size the size used (or null)},
     "image_shape": [H, W], "class_names": [...], "num_classes": K,
     "n_train": N, "n_test": M,
     "split_digest": "sha256:<hex>" | null,          # of the held-out indices
     "image_preprocessing": {"size": 28, "invert": "never", "trim": false} | null,
     "n_skipped": 0, "skipped": ["/abs/dir/cat/x.png: cannot decode ...", ...]}

``image_preprocessing`` is set for decoded images (folder, parquet): what ``predict`` must do to a
photo so that it looks like the training images (``softmaxlab.images.load_image(path, invert,
trim, size)``). :func:`load_from_record` loads exactly the same splits again and raises
:class:`DataError` naming the file when the data changed or is gone; :func:`check_record` only
checks the checksums (hashing, no decoding).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..images import INVERT_CHOICES
from .datasets import ImageDataset
from .formats import (
    IDX_NAMES,
    MAX_SKIPPED_LISTED,
    READERS,
    Part,
    ReadOptions,
    Source,
    source_checksum,
)
from .imagefiles import Preprocess
from .rows import part_of
from .sources import file_in
from .specs import SPECS

KINDS = ("idx", "csv", "folder", "npz", "npy", "parquet")
IMAGE_KINDS = ("folder", "parquet")  # decoded images: image_size, invert, trim, strict apply
ARRAY_KINDS = ("csv", "npz", "npy")  # flat rows possible: image_shape applies
EXTENSIONS = {".csv": "csv", ".csv.gz": "csv", ".npz": "npz", ".parquet": "parquet",
              ".pq": "parquet"}
DEFAULT_TEST_SPLIT = 0.2  # share of each class held out as the test set when there is none
DEFAULT_IMAGE_SIZE = 28  # side of decoded images (Fashion-MNIST's)
MAX_IMAGE_SIZE = 1024  # larger is a typo (a 1024x1024 model has a million inputs per class)
RECORD_VERSION = 1


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class DataSpec:
    """A parsed spec: ``kind`` is ``"named"`` (``name`` set) or one of :data:`KINDS` (``path``
    set, absolute). ``str(spec)`` is its canonical form (``"csv:/abs/train.csv"``)."""

    kind: str
    path: Path | None = None
    name: str | None = None

    @property
    def named(self) -> bool:
        """Whether this is a named dataset (loaded by ``load_dataset``)."""
        return self.kind == "named"

    def __str__(self) -> str:
        return self.name if self.named else f"{self.kind}:{self.path}"


def _absolute(path: str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(path)))


def detect_kind(path: Path) -> str:
    """The kind of a bare path: by extension for a file, by contents for a folder.

    Raises:
        DataError: the path does not exist, or a folder holds none of the known layouts.
        ConfigError: a file whose extension says nothing.
    """
    kinds = ", ".join(KINDS)
    if path.is_dir():
        if file_in(path, IDX_NAMES["train_images"]) or file_in(path, IDX_NAMES["train_labels"]):
            return "idx"
        if (path / "x_train.npy").is_file() or (path / "y_train.npy").is_file():
            return "npy"
        try:
            has_dirs = any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
        except OSError as e:
            raise DataError(f"{path}: cannot list the folder ({e.strerror or e})") from None
        if has_dirs:
            return "folder"
        raise DataError(f"{path}: the folder holds no dataset softmaxlab knows: no IDX files "
                        "(train-images-idx3-ubyte...), no x_train.npy, no class sub-folders")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    name = path.name.lower()
    for ext, kind in sorted(EXTENSIONS.items(), key=lambda e: -len(e[0])):
        if name.endswith(ext):
            return kind
    if name.endswith(".npy"):
        raise ConfigError(f"{path}: a .npy file holds one array; give the folder holding "
                          "x_train.npy and y_train.npy (npy:DIR)")
    raise ConfigError(f"{path}: cannot tell the format from the extension; write KIND:PATH "
                      f"with KIND one of {kinds}")


def parse_spec(spec: str | os.PathLike) -> DataSpec:
    """A spec string (see the module docstring) as a :class:`DataSpec`; a bare path is looked
    at to find its kind, a ``KIND:PATH`` is not (the reader checks it).

    Raises:
        ConfigError: an empty spec, a kind without a path, an unrecognised extension.
        DataError: a bare path that does not exist or holds no known layout.
    """
    text = os.fspath(spec)
    if not text.strip():
        raise ConfigError("the dataset spec is empty; give a dataset name "
                          f"({', '.join(SPECS)}), KIND:PATH or a path")
    if text in SPECS:
        return DataSpec("named", name=text)
    kind, colon, rest = text.partition(":")
    if colon and kind.lower() in KINDS:
        if not rest.strip():
            raise ConfigError(f"the spec {text!r} names no path after '{kind}:'; write "
                              f"{kind.lower()}:PATH")
        return DataSpec(kind.lower(), _absolute(rest))
    path = _absolute(text)
    if colon and not path.exists() and kind and "/" not in kind and "\\" not in kind:
        raise ConfigError(f"unknown data kind {kind!r} in {text!r}; write KIND:PATH with KIND "
                          f"one of {', '.join(KINDS)}, or a dataset name ({', '.join(SPECS)})")
    return DataSpec(detect_kind(path), path)


# --------------------------------------------------------------------------- options


def parse_image_shape(text: str) -> tuple[int, int]:
    """``"28,28"`` (or ``"28x28"``) -> ``(28, 28)``; ConfigError otherwise."""
    parts = text.replace("x", ",").replace("X", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 2 or min(shape) < 1:
        raise ConfigError(f"--image-shape {text!r} is not allowed; give H,W with two integers "
                          ">= 1, e.g. 28,28")
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class DataOptions:
    """How a spec is read, split and preprocessed; validated on creation (ConfigError).

    All of it goes into the record, resolved (see the module docstring).
    """

    test_data: str | None = None  # a second spec: the test set (else the data's own, or held out)
    test_split: float | None = None  # share held out when there is no test set (None: 0.2)
    split_seed: int = 0  # seed of the stratified hold-out
    image_shape: tuple[int, int] | None = None  # csv / flat arrays: how the N values form (H, W)
    image_size: int | None = None  # folder / parquet: side of the square images (None: 28)
    invert: str = "never"  # folder / parquet: "never" | "auto" (light border) | "always"
    trim: bool = False  # folder / parquet: crop to the object before scaling
    strict: bool = False  # folder / parquet: an image that cannot be decoded is an error

    def __post_init__(self) -> None:
        if self.test_data is not None and (not isinstance(self.test_data, str | os.PathLike)
                                           or not os.fspath(self.test_data).strip()):
            raise ConfigError(f"test_data={self.test_data!r} is not allowed; give a spec or a path")
        if self.test_data is not None:
            object.__setattr__(self, "test_data", os.fspath(self.test_data))
        ts = self.test_split
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)
                               or not 0 < ts < 1 or not math.isfinite(ts)):
            raise ConfigError(f"test_split={ts!r} is not allowed; give the share of the data to "
                              "hold out, between 0 and 1 (exclusive), e.g. 0.2")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int | np.integer) \
                or self.split_seed < 0:
            raise ConfigError(f"split_seed={self.split_seed!r} is not allowed; it must be an int "
                              ">= 0")
        if self.image_shape is not None:
            shape = tuple(self.image_shape)
            if len(shape) != 2 or not all(isinstance(s, int | np.integer)
                                          and not isinstance(s, bool) and s >= 1 for s in shape):
                raise ConfigError(f"image_shape={self.image_shape!r} is not allowed; give (H, W), "
                                  "two ints >= 1")
            object.__setattr__(self, "image_shape", tuple(int(s) for s in shape))
        size = self.image_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int | np.integer)
                                 or not 1 <= size <= MAX_IMAGE_SIZE):
            raise ConfigError(f"image_size={size!r} is not allowed; give the side of the square "
                              f"images, an int from 1 to {MAX_IMAGE_SIZE}")
        if self.invert not in INVERT_CHOICES:
            raise ConfigError(f"invert={self.invert!r} is not allowed; use one of "
                              f"{', '.join(INVERT_CHOICES)}")
        for name in ("trim", "strict"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not allowed; give True or "
                                  "False")

    def to_dict(self) -> dict:
        """A JSON-able dict (``image_shape`` a list)."""
        d = asdict(self)
        d["image_shape"] = list(self.image_shape) if self.image_shape else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DataOptions:
        """The options of :meth:`to_dict`; unknown keys are a ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown data options {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if d.get("image_shape") is not None:
            d["image_shape"] = tuple(d["image_shape"])
        return cls(**d)


def _check_applicable(options: DataOptions, kinds: set[str]) -> None:
    """Options that mean nothing for these kinds are a ConfigError, not silently ignored."""
    what = " and ".join(sorted(kinds))
    if not kinds & set(IMAGE_KINDS):
        for name, flag, default in (("image_size", "--image-size", None),
                                    ("invert", "--invert", "never"), ("trim", "--trim", False),
                                    ("strict", "--strict", False)):
            if getattr(options, name) != default:
                raise ConfigError(f"{flag} applies to decoded images (folder and parquet data), "
                                  f"not to {what} data; drop it")
    if options.image_shape is not None and not kinds & set(ARRAY_KINDS):
        raise ConfigError(f"--image-shape applies to flat rows (csv, npz and npy data), not to "
                          f"{what} data, whose images have their shape; drop it")


# --------------------------------------------------------------------------- the hold-out


def stratified_split(labels: np.ndarray | torch.Tensor, test_fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A seeded stratified hold-out: ``(train_index, test_index)``, each sorted int64.

    Of each class's n examples, ``floor(test_fraction * n + 0.5)`` go to the test set (at most
    n - 1: every class keeps a training example); which ones is drawn from
    ``SeedSequence([seed, class])``, so the split depends only on ``(labels, test_fraction,
    seed)`` — one class's draw does not depend on the others' — and a folder's files are in
    sorted path order, not the file system's.
    """
    labels = np.asarray(labels)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = min(math.floor(test_fraction * len(idx) + 0.5), len(idx) - 1)
        if k <= 0:
            continue
        keys = np.random.SeedSequence([int(seed), int(c)]).generate_state(len(idx), np.uint64)
        chosen.append(idx[np.argsort(keys, kind="stable")[:k]])
    test = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train.astype(np.int64), test.astype(np.int64)


def _index_digest(index: np.ndarray) -> str:
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(index, np.int64).tobytes()).hexdigest()


# --------------------------------------------------------------------------- loading


def _read(spec: DataSpec, options: DataOptions, progress: bool, want_test: bool,
          part: tuple[int, int] | None = None) -> Source:
    size = options.image_size or DEFAULT_IMAGE_SIZE
    read_options = ReadOptions(options.image_shape, Preprocess(size, options.invert, options.trim),
                               options.strict, progress, want_test, part)
    path = spec.path
    if spec.kind in ("idx", "npy", "folder"):
        if not path.is_dir():
            raise DataError(f"{path}: {'no such folder' if not path.exists() else 'not a folder'}"
                            f"; {spec.kind}:PATH takes a folder")
    elif not path.is_file():
        raise DataError(f"{path}: {'no such file' if not path.exists() else 'not a file'}; "
                        f"{spec.kind}:PATH takes a file")
    source = READERS[spec.kind](path, read_options)
    if part is not None and source.all_train_labels is None:
        # a format that cannot be read in part (CSV, .npz, image folders): read whole, keep
        # the share
        source.all_train_labels = source.train.labels
        source.train = source.train.take(np.arange(*part_of(len(source.train.labels), *part)))
    return source


def _class_names(source: Source) -> tuple[str, ...]:
    """The training classes: the data's names, or "0" to "K-1" (K = the largest label + 1)."""
    labels = source.train.labels if source.all_train_labels is None else source.all_train_labels
    names = source.class_names or tuple(str(k) for k in range(int(labels.max()) + 1))
    present = np.unique(labels)
    if len(present) < 2:
        raise DataError(f"{source.path}: every training example is of class "
                        f"{names[int(present[0])]!r}; a classifier needs two classes or more")
    return names


def _align_test(test: Part, test_names: tuple[str, ...] | None, train_names: tuple[str, ...],
                train_named: bool) -> Part:
    """Test labels as training class indices: by name where both sides name their classes,
    else as they are; a test label that is no training class is a DataError."""
    labels = test.labels
    if test_names is not None and train_named and test_names != train_names:
        index = {name: k for k, name in enumerate(train_names)}
        mapping = np.array([index.get(name, -1) for name in test_names], np.int64)
        labels = mapping[labels]
        bad = np.flatnonzero(labels < 0)
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{test.where(i)}: class {test_names[test.labels[i]]!r} is not "
                            f"among the training classes ({', '.join(train_names)})")
        return Part(test.images, labels, test.where)
    bad = np.flatnonzero(labels >= len(train_names))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{test.where(i)}: label {int(labels[i])} is outside the training "
                        f"set's classes (labels 0 to {len(train_names) - 1})")
    return test


def _source_record(spec: DataSpec, source: Source) -> dict:
    return {"spec": str(spec), "kind": spec.kind, "path": str(spec.path),
            "checksum": source.checksum, "files": source.files}


def _dataset(part: Part, names: tuple[str, ...], label: str) -> ImageDataset:
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(part.images)),
                        torch.from_numpy(np.ascontiguousarray(part.labels, np.int64)), names, label)


def load_data_spec(spec: str | os.PathLike | DataSpec, options: DataOptions | None = None,
                   progress: bool = False, shard: tuple[int, int] | None = None
                   ) -> tuple[ImageDataset, ImageDataset, dict]:
    """Load a user's dataset into memory: ``(train, test, record)``.

    Args:
        spec: ``KIND:PATH`` or a bare path (see the module docstring); not a named dataset
            (use :func:`softmaxlab.data.load_dataset` for those).
        options: how to read, split and preprocess it (default ``DataOptions()``).
        progress: show tqdm bars on stderr while reading and decoding.
        shard: (rank, world_size): the training split holds only that rank's contiguous share
            of the rows (``rows.part_of``); IDX, .npy and Parquet are read in part, the other
            formats whole and then cut. The data needs a test set of its own (or --test-data).
    Returns:
        uint8 (N, H, W) / int64 ImageDatasets with the data's class names, and the record (see
        the module docstring) to store with the run.
    Raises:
        DataError: a problem with the data, in one line naming the file and the line, row or
            image. ConfigError: a bad spec, or an option that does not apply to this data.
    """
    options = options or DataOptions()
    spec = spec if isinstance(spec, DataSpec) else parse_spec(spec)
    if spec.named:
        raise ConfigError(f"{spec.name} is a named dataset; load it with "
                          "softmaxlab.data.load_dataset")
    test_spec = None
    if options.test_data is not None:
        test_spec = parse_spec(options.test_data)
        if test_spec.named:
            raise ConfigError(f"--test-data {test_spec.name}: a named dataset cannot be the test "
                              "set of your data; give KIND:PATH or a path")
    _check_applicable(options, {spec.kind} | ({test_spec.kind} if test_spec else set()))

    source = _read(spec, options, progress, test_spec is None, shard)
    test_source = _read(test_spec, options, progress, want_test=True) if test_spec else None
    train_part = source.train
    split_index = None
    if test_source is not None:
        test_part, test_from = test_source.test or test_source.train, "test-data"
    elif source.test is not None:
        test_part, test_from = source.test, "data"
    else:
        test_part, test_from = None, "held-out"
    if test_part is not None and options.test_split is not None:
        given = f"{spec} has one" if test_from == "data" else "--test-data gives one"
        raise ConfigError(f"--test-split applies to data without a test set, but {given}; "
                          "drop it")

    names = _class_names(source)
    skipped: list[str] = []
    if test_part is None and shard is not None:
        raise ConfigError(f"{spec}: sharded training needs data with a test set (IDX t10k files, "
                          "x_test/y_test arrays, train/ and test/ folders) or --test-data: "
                          "holding out a test split takes every row, which a shard does not "
                          "read")
    if test_part is None:
        fraction = options.test_split or DEFAULT_TEST_SPLIT
        train_index, split_index = stratified_split(train_part.labels, fraction,
                                                    options.split_seed)
        if not len(split_index):
            raise DataError(f"{spec.path}: {len(train_part.labels)} examples are too few to hold "
                            f"out {fraction:g} of each class as a test set; give a larger "
                            "--test-split or a test set with --test-data")
        test_part, train_part = train_part.take(split_index), train_part.take(train_index)
    else:
        fraction = None
        skipped = (test_source or source).skipped
        test_names = (test_source or source).class_names
        test_part = _align_test(test_part, test_names, names, source.class_names is not None)
    where = test_source.path if test_source else spec.path
    if not len(test_part.labels):
        raise DataError(f"{where}: none of the test images can be decoded ({len(skipped)} "
                        f"skipped, the first: {skipped[0] if skipped else '-'})")
    if train_part.images.shape[1:] != test_part.images.shape[1:]:
        th, tw = test_part.images.shape[1:]
        h, w = train_part.images.shape[1:]
        raise DataError(f"{where}: the test images are {th}x{tw} but the training images are "
                        f"{h}x{w}; both sets must have the same image size")

    kinds = {spec.kind} | ({test_spec.kind} if test_spec else set())
    decoded = bool(kinds & set(IMAGE_KINDS))
    size = (options.image_size or DEFAULT_IMAGE_SIZE) if decoded else None
    resolved = DataOptions(str(test_spec) if test_spec else None, fraction, options.split_seed,
                           options.image_shape, size, options.invert, options.trim,
                           options.strict)
    sources = {"train": _source_record(spec, source)}
    if test_source is not None:
        sources["test"] = _source_record(test_spec, test_source)
    skipped = source.skipped + (test_source.skipped if test_source else [])
    record = {
        "version": RECORD_VERSION,
        "sources": sources,
        "test_from": test_from,
        "options": resolved.to_dict(),
        "image_shape": list(train_part.images.shape[1:]),
        "class_names": list(names),
        "num_classes": len(names),
        "n_train": len(train_part.labels if source.all_train_labels is None
                       else source.all_train_labels),
        "n_test": len(test_part.labels),
        "split_digest": _index_digest(split_index) if split_index is not None else None,
        "image_preprocessing": ({"size": size, "invert": options.invert, "trim": options.trim}
                                if decoded else None),
        "n_skipped": source.n_skipped + (test_source.n_skipped if test_source else 0),
        "skipped": skipped[:MAX_SKIPPED_LISTED],
    }
    label = spec.path.name
    return (_dataset(train_part, names, f"{label}/train"),
            _dataset(test_part, names, f"{label}/test"), record)


# --------------------------------------------------------------------------- records


def _record_sources(record: dict) -> dict[str, dict]:
    try:
        if record["version"] != RECORD_VERSION:
            raise DataError(f"the data record is of version {record['version']}; this softmaxlab "
                            f"reads version {RECORD_VERSION}: train a new run")
        sources = record["sources"]
        if not all({"spec", "kind", "path", "checksum"} <= set(s) for s in sources.values()):
            raise KeyError("sources")
        return sources
    except (KeyError, TypeError, AttributeError):
        raise DataError("the run's data record is damaged (a field is missing); train a new "
                        "run") from None


def _check_present(role: str, source: dict) -> Path:
    path = Path(source["path"])
    if not path.exists():
        what = "training data" if role == "train" else "test data"
        raise DataError(f"{path}: the run's {what} is gone (no such "
                        f"{'folder' if source['kind'] in ('idx', 'npy', 'folder') else 'file'}); "
                        "put it back, or train a new run")
    return path


def _changed(path: Path, then: dict, now_checksum: str, now_files: int) -> DataError:
    files = (f"; {then.get('files')} files then, {now_files} now"
             if then.get("files") != now_files else "")
    return DataError(f"{path}: the data changed since the run was trained (its checksum was "
                     f"{then['checksum'][:20]}..., now {now_checksum[:20]}...{files}); restore "
                     "it, or train a new run on the new data")


def check_record(record: dict) -> None:
    """Check that the data of a record is still there, unchanged (hashing its files, without
    decoding them).

    Raises:
        DataError: naming the file or folder that is gone or changed, or a damaged record.
    """
    sources = _record_sources(record)
    for role, source in sources.items():
        path = _check_present(role, source)
        want_test = role == "test" or "test" not in sources  # as load_data_spec read it
        checksum, files = source_checksum(source["kind"], path, want_test)
        if checksum != source["checksum"]:
            raise _changed(path, source, checksum, files)


def load_from_record(record: dict, progress: bool = False, shard: tuple[int, int] | None = None
                     ) -> tuple[ImageDataset, ImageDataset]:
    """Load the same ``(train, test)`` splits as when ``record`` was made (for evaluate,
    ``--resume``, report): same files, checked against their checksums, same options.

    Raises:
        DataError: the data is gone or changed (naming the file), or loads differently.
    """
    sources = _record_sources(record)
    for role, source in sources.items():
        _check_present(role, source)
    try:
        options = DataOptions.from_dict(record["options"])
    except (KeyError, TypeError) as e:
        raise DataError(f"the run's data record is damaged ({e}); train a new run") from None
    train, test, now = load_data_spec(sources["train"]["spec"], options, progress, shard)
    for role, source in sources.items():
        new = now["sources"][role]
        if new["checksum"] != source["checksum"]:
            raise _changed(Path(source["path"]), source, new["checksum"], new["files"])
    for key in ("class_names", "image_shape", "n_train", "n_test", "split_digest"):
        if now[key] != record.get(key):
            raise DataError(f"{sources['train']['path']}: the data loads differently than when "
                            f"the run was trained ({key} was {record.get(key)!r}, now "
                            f"{now[key]!r}) although its files are the same; train a new run")
    return train, test
