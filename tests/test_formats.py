"""Your own data in every format: loaded exactly, trained on with the same parameters as the arrays.

The data are real images — scikit-learn's 8x8 digits and the first 3000 / 1000 images of the
installed Fashion-MNIST — written by independent writers (tests/formats_helpers.py) as CSV, PNG
and JPEG folders, npz, .npy files, Parquet (Hugging Face's layout, PNG bytes) and IDX folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from formats_helpers import (
    FASHION_NAMES,
    HF_FASHION_NAMES,
    Arrays,
    digits,
    encode,
    fashion_subset,
    train,
    write_csv,
    write_idx_dir,
    write_image_folder,
    write_npy_dir,
    write_npz,
    write_parquet,
)
from softmaxlab.data import (
    DataOptions,
    ImageDataset,
    check_record,
    load_data_spec,
    load_from_record,
    stratified_split,
)
from softmaxlab.data.imagefiles import Preprocess, decode_bytes, decode_many, image_files
from softmaxlab.errors import DataError
from softmaxlab.images import load_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIGIT_NAMES = tuple(str(k) for k in range(10))
# class folder names that sort in label order, so a folder loads in the arrays' class order
ORDERED_FASHION = tuple(f"{k}-{name}" for k, name in enumerate(FASHION_NAMES))


def by_class(split: Arrays) -> Arrays:
    """The examples in a folder's order: class by class, each in its original order."""
    return split.take(np.argsort(split.labels, kind="stable"))


def assert_same(loaded: ImageDataset, expected: Arrays) -> None:
    assert loaded.images.dtype == torch.uint8 and loaded.labels.dtype == torch.int64
    np.testing.assert_array_equal(loaded.images.numpy(), expected.images)
    np.testing.assert_array_equal(loaded.labels.numpy(), expected.labels)


# --------------------------------------------------------------------------- the files


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> tuple[Path, Arrays, Arrays]:
    root = tmp_path_factory.mktemp("digits")
    tr, te = digits()
    write_csv(root / "train.csv", tr)
    write_csv(root / "test.csv", te)
    write_npz(root / "digits.npz", tr, te)
    write_npy_dir(root / "npy", tr, te)
    write_idx_dir(root / "idx", tr, te)
    write_parquet(root / "train.parquet", tr, DIGIT_NAMES)
    write_parquet(root / "test.parquet", te, DIGIT_NAMES)
    write_parquet(root / "plain.parquet", tr)
    write_image_folder(root / "png" / "train", tr, DIGIT_NAMES)
    write_image_folder(root / "png" / "test", te, DIGIT_NAMES)
    return root, tr, te


@pytest.fixture(scope="module")
def fashion_files(tmp_path_factory, real_data_dir) -> tuple[Path, Arrays, Arrays]:
    root = tmp_path_factory.mktemp("fashion")
    tr, te = fashion_subset(real_data_dir, 3000, 1000)
    write_csv(root / "train.csv", tr)
    write_csv(root / "test.csv", te)
    write_npz(root / "fashion.npz", tr, te)
    write_npy_dir(root / "npy", tr, te)
    write_idx_dir(root / "idx", tr, te, gz=False)
    write_parquet(root / "train.parquet", tr, HF_FASHION_NAMES)
    write_parquet(root / "test.parquet", te, HF_FASHION_NAMES)
    for split, arrays in (("train", tr), ("test", te)):
        write_image_folder(root / "png" / split, arrays, ORDERED_FASHION)
        write_image_folder(root / "jpeg" / split, arrays, ORDERED_FASHION, "JPEG")
    return root, tr, te


# spec (relative to the files' folder), options, class names, whether it loads in class order
SPECS = {
    "csv": ("train.csv", {"test_data": "test.csv"}, None, False),
    "npz": ("digits.npz", {}, None, False),
    "npy": ("npy", {}, None, False),
    "idx": ("idx", {}, None, False),
    "parquet": ("train.parquet", {"test_data": "test.parquet", "image_size": 8}, DIGIT_NAMES,
                False),
    "folder": ("png", {"image_size": 8}, DIGIT_NAMES, True),
}


def load(root: Path, spec: str, **options):
    if "test_data" in options:
        options["test_data"] = str(root / options["test_data"])
    return load_data_spec(spec if ":" in spec else root / spec, DataOptions(**options))


# --------------------------------------------------------------------------- digits, every format


@pytest.mark.parametrize("fmt", list(SPECS))
def test_digits_load_exactly_in_every_lossless_format(digit_files, fmt):
    root, tr, te = digit_files
    spec, options, names, ordered = SPECS[fmt]
    train_ds, test_ds, record = load(root, spec, **options)
    if ordered:
        tr, te = by_class(tr), by_class(te)
    assert_same(train_ds, tr)
    assert_same(test_ds, te)
    assert train_ds.class_names == test_ds.class_names == (names or DIGIT_NAMES)
    assert train_ds.image_shape == (8, 8)
    json.dumps(record)  # JSON-able as it is
    assert record["sources"]["train"]["kind"] == ("folder" if fmt == "folder" else fmt)
    assert record["n_train"] == len(tr) and record["n_test"] == len(te)
    assert record["test_from"] == ("test-data" if "test_data" in options else "data")


def test_parquet_without_metadata_names_classes_by_number(digit_files):
    root, tr, _ = digit_files
    train_ds, test_ds, record = load(root, "plain.parquet", image_size=8)
    assert train_ds.class_names == DIGIT_NAMES
    assert record["test_from"] == "held-out"
    assert len(train_ds) + len(test_ds) == len(tr)


def test_metadata_names_the_classes_and_a_folder_maps_names_to_sorted_indices(tmp_path):
    tr, te = digits()
    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    write_image_folder(tmp_path / "words" / "train", tr, words)
    write_image_folder(tmp_path / "words" / "test", te, words)
    write_parquet(tmp_path / "words.parquet", tr, words)
    train_ds, test_ds, _ = load_data_spec(tmp_path / "words", DataOptions(image_size=8))
    assert train_ds.class_names == tuple(sorted(words))  # as torchvision's ImageFolder
    for k, name in enumerate(train_ds.class_names):
        original = words.index(name)
        np.testing.assert_array_equal(train_ds.images[train_ds.labels == k].numpy(),
                                      tr.images[tr.labels == original])
        np.testing.assert_array_equal(test_ds.images[test_ds.labels == k].numpy(),
                                      te.images[te.labels == original])
    parquet_ds, _, _ = load_data_spec(tmp_path / "words.parquet", DataOptions(image_size=8))
    assert parquet_ds.class_names == words


def test_a_test_folder_is_matched_to_the_training_classes_by_name(tmp_path):
    tr, te = digits()
    write_image_folder(tmp_path / "train", tr, DIGIT_NAMES)
    three = te.take(np.flatnonzero(np.isin(te.labels, [3, 7])))
    write_image_folder(tmp_path / "test", three, DIGIT_NAMES)  # two classes only: fine
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == ["3", "7"]
    train_ds, test_ds, record = load_data_spec(
        tmp_path / "train", DataOptions(test_data=str(tmp_path / "test"), image_size=8))
    assert train_ds.num_classes == 10
    assert_same(test_ds, by_class(three))
    assert record["sources"]["test"]["kind"] == "folder"


def test_flat_rows_take_an_image_shape(tmp_path):
    tr, _ = digits()
    wide = Arrays(tr.images[:, :, :6].copy(), tr.labels)  # 8x6: 48 pixels, not a square
    write_csv(tmp_path / "wide.csv", wide)
    np.savez(tmp_path / "flat.npz", x_train=wide.images.reshape(len(wide), -1),
             y_train=wide.labels)
    for spec in ("wide.csv", "flat.npz"):
        train_ds, test_ds, record = load_data_spec(tmp_path / spec,
                                                   DataOptions(image_shape=(8, 6)))
        assert train_ds.image_shape == (8, 6) and record["image_shape"] == [8, 6]
        assert len(train_ds) + len(test_ds) == len(wide)


def test_keras_and_torch_array_layouts_load_alike(tmp_path):
    tr, te = digits()
    rgb = np.repeat(tr.images[..., None], 3, axis=-1)
    layouts = {
        "nhwc1": tr.images[..., None], "n1hw": tr.images[:, None], "flat": tr.images.reshape(
            len(tr), -1), "int64": tr.images.astype(np.int64), "rgb": rgb,
        "float": tr.images.astype(np.float32),
    }
    for name, x in layouts.items():
        np.savez(tmp_path / f"{name}.npz", x_train=x, y_train=tr.labels[:, None],
                 x_test=te.images, y_test=te.labels.astype(np.uint8))
        train_ds, test_ds, _ = load_data_spec(tmp_path / f"{name}.npz")
        assert_same(train_ds, tr)  # gray RGB converts back exactly (Pillow's luma weights)
        assert_same(test_ds, te)


def test_rgb_arrays_become_gray_as_pillow_converts_them(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(40, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", x_train=rgb, y_train=np.arange(40) % 2)
    train_ds, test_ds, _ = load_data_spec(tmp_path / "rgb.npz", DataOptions(test_split=0.5))
    gray = np.stack([np.asarray(Image.fromarray(x).convert("L")) for x in rgb])
    loaded = np.concatenate([train_ds.images.numpy(), test_ds.images.numpy()])
    assert sorted(map(bytes, loaded)) == sorted(map(bytes, gray))


# --------------------------------------------------------------------------- same parameters


@pytest.fixture(scope="module")
def fashion_expected(fashion_files):
    """The arrays' own training result, in file order and in class (folder) order."""
    _, tr, te = fashion_files
    names = FASHION_NAMES
    return {"file": train(tr.dataset(names), te.dataset(names)),
            "class": train(by_class(tr).dataset(names), by_class(te).dataset(names))}


FASHION_SPECS = {
    "csv": ("train.csv", {"test_data": "test.csv"}, "file"),
    "npz": ("fashion.npz", {}, "file"),
    "npy": ("npy", {}, "file"),
    "idx": ("idx:{root}/idx", {}, "file"),
    "parquet": ("train.parquet", {"test_data": "test.parquet"}, "file"),
    "png folder": ("folder:{root}/png", {}, "class"),
}


@pytest.mark.parametrize("fmt", list(FASHION_SPECS))
def test_fashion_mnist_trains_to_the_same_parameters_as_the_arrays(fashion_files,
                                                                   fashion_expected, fmt):
    root, tr, te = fashion_files
    spec, options, order = FASHION_SPECS[fmt]
    if "{root}" in spec:
        spec = spec.format(root=root)
    train_ds, test_ds, _ = load(root, spec, **options)
    if order == "class":
        tr, te = by_class(tr), by_class(te)
    assert_same(train_ds, tr)
    assert_same(test_ds, te)
    W, b, acc = train(train_ds, test_ds)
    W0, b0, acc0 = fashion_expected[order]
    assert torch.equal(W, W0) and torch.equal(b, b0)
    assert acc == acc0 > 0.7


def test_a_jpeg_folder_trains_to_within_a_point_of_the_arrays(fashion_files):
    """JPEG at Pillow's default quality (75) is lossy; 10 epochs (the chapter's run) on it reach
    the arrays' test accuracy within 0.01 (0.802 against 0.805 when written)."""
    root, tr, te = fashion_files
    train_ds, test_ds, record = load_data_spec(f"folder:{root}/jpeg")
    assert train_ds.class_names == ORDERED_FASHION and len(train_ds) == 3000
    assert record["image_preprocessing"] == {"size": 28, "invert": "never", "trim": False}
    assert 0 < (train_ds.images.numpy() != by_class(tr).images).mean() < 0.9  # lossy, yet close
    _, _, acc = train(train_ds, test_ds, epochs=10)
    _, _, acc0 = train(by_class(tr).dataset(ORDERED_FASHION), by_class(te).dataset(ORDERED_FASHION),
                       epochs=10)
    assert abs(acc - acc0) <= 0.01


def test_a_held_out_csv_split_trains_like_the_arrays_split_alike(fashion_files):
    root, tr, _ = fashion_files
    train_ds, test_ds, record = load_data_spec(root / "train.csv",
                                               DataOptions(test_split=0.25, split_seed=3))
    train_idx, test_idx = stratified_split(tr.labels, 0.25, 3)
    assert_same(train_ds, tr.take(train_idx))
    assert_same(test_ds, tr.take(test_idx))
    assert record["test_from"] == "held-out"
    assert record["options"]["test_split"] == 0.25 and record["options"]["split_seed"] == 3
    W, b, _ = train(train_ds, test_ds)
    W0, b0, _ = train(tr.take(train_idx).dataset(FASHION_NAMES),
                      tr.take(test_idx).dataset(FASHION_NAMES))
    assert torch.equal(W, W0) and torch.equal(b, b0)


# --------------------------------------------------------------------------- the hold-out


def test_the_hold_out_is_stratified_seeded_and_per_class():
    labels = np.repeat(np.arange(5), [100, 50, 20, 3, 1])
    train_idx, test_idx = stratified_split(labels, 0.2, 0)
    assert np.intersect1d(train_idx, test_idx).size == 0
    assert np.array_equal(np.union1d(train_idx, test_idx), np.arange(len(labels)))
    assert list(np.bincount(labels[test_idx], minlength=5)) == [20, 10, 4, 1, 0]
    again = stratified_split(labels, 0.2, 0)
    assert np.array_equal(again[1], test_idx)
    assert not np.array_equal(stratified_split(labels, 0.2, 1)[1], test_idx)
    # a class's draw depends on its own examples only: other classes may come and go
    twos = np.flatnonzero(labels == 2)
    mixed = np.concatenate([np.full(20, 2), np.full(7, 9)])  # class 2's 20 first, then others
    mixed_test = stratified_split(mixed, 0.2, 0)[1]
    picked = np.searchsorted(twos, test_idx[labels[test_idx] == 2])  # as indices within class 2
    assert np.array_equal(picked, mixed_test[mixed[mixed_test] == 2])


def test_image_files_come_in_name_order_whatever_the_order_they_were_made_in(tmp_path):
    names = ["b.png", "a.png", "c.PNG", ".hidden.png", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "0.png").write_bytes(b"x")
    assert [Path(p).relative_to(tmp_path).as_posix() for p in image_files(tmp_path)] == [
        "a.png", "b.png", "c.PNG", "sub/0.png"]


# --------------------------------------------------------------------------- photos, as predict


def photo(image: np.ndarray, background: int = 255) -> bytes:
    """A Fashion-MNIST image as a camera would give it: dark on a light background, RGB,
    larger and off-centre, as JPEG."""
    canvas = np.full((90, 70), background, np.uint8)
    canvas[10:66, 5:61] = 255 - np.asarray(Image.fromarray(image).resize((56, 56)))
    return encode(np.stack([canvas] * 3, axis=-1), "JPEG", quality=90)


def test_folder_images_are_prepared_as_predict_prepares_a_photo(tmp_path, digit_files):
    _, tr, _ = digit_files
    for cls in ("a", "b"):
        (tmp_path / "photos" / cls).mkdir(parents=True)
    for i in range(12):
        (tmp_path / "photos" / "ab"[i % 2] / f"{i}.jpg").write_bytes(photo(tr.images[i]))
    options = DataOptions(invert="auto", trim=True, image_size=20, test_split=0.5)
    train_ds, test_ds, record = load_data_spec(tmp_path / "photos", options)
    assert record["image_preprocessing"] == {"size": 20, "invert": "auto", "trim": True}
    expected = {bytes(load_image(p, invert="auto", trim=True, size=20))
                for p in image_files(tmp_path / "photos")}
    got = {bytes(x) for x in torch.cat([train_ds.images, test_ds.images]).numpy()}
    assert got == expected
    # the light background became black, as Fashion-MNIST's: the images are mostly dark
    assert train_ds.images.float().mean() < 100


def test_decoding_in_worker_processes_gives_the_same_images_and_checksums(digit_files):
    root, _, _ = digit_files
    files = image_files(root / "png")[:600]
    prep = Preprocess(size=12, invert="auto", trim=True)
    one = decode_many(files, files, prep, workers=1)
    two = decode_many(files, files, prep, workers=2)
    assert np.array_equal(one.images, two.images) and one.digests == two.digests
    assert not one.errors
    assert np.array_equal(one.images[5], decode_bytes(Path(files[5]).read_bytes(), "x", prep))


# --------------------------------------------------------------------------- records


def test_a_record_reloads_the_same_splits_and_notices_a_changed_file(tmp_path, digit_files):
    _, tr, _ = digit_files
    write_csv(tmp_path / "d.csv", tr)
    train_ds, test_ds, record = load_data_spec(tmp_path / "d.csv", DataOptions(split_seed=5))
    record = json.loads(json.dumps(record))  # as read back from config.json
    assert record["sources"]["train"]["path"] == str(tmp_path / "d.csv")
    assert record["sources"]["train"]["checksum"].startswith("sha256:")
    assert record["options"] == {"test_data": None, "test_split": 0.2, "split_seed": 5,
                                 "image_shape": None, "image_size": None, "invert": "never",
                                 "trim": False, "strict": False}
    check_record(record)
    again_train, again_test = load_from_record(record)
    assert torch.equal(again_train.images, train_ds.images)
    assert torch.equal(again_test.labels, test_ds.labels)

    text = (tmp_path / "d.csv").read_text()
    (tmp_path / "d.csv").write_text(text.replace("\n0,", "\n1,", 1))  # one label changed
    for check in (check_record, load_from_record):
        with pytest.raises(DataError, match=r"d\.csv: the data changed since the run was trained"):
            check(record)
    (tmp_path / "d.csv").unlink()
    for check in (check_record, load_from_record):
        with pytest.raises(DataError, match=r"d\.csv: the run's training data is gone"):
            check(record)


def test_a_folder_record_notices_an_added_and_an_edited_image(tmp_path, digit_files):
    _, tr, te = digit_files
    small = tr.take(np.arange(60))
    write_image_folder(tmp_path / "f" / "train", small, DIGIT_NAMES)
    write_image_folder(tmp_path / "f" / "test", te.take(np.arange(30)), DIGIT_NAMES)
    _, _, record = load_data_spec(tmp_path / "f", DataOptions(image_size=8))
    assert record["sources"]["train"]["files"] == 90
    check_record(record)
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "f", copy)  # a copy (new mtimes) is the same data
    moved = json.loads(json.dumps(record).replace(str(tmp_path / "f"), str(copy)))
    check_record(moved)
    Image.fromarray(te.images[0]).save(tmp_path / "f" / "test" / "3" / "new.png")
    with pytest.raises(DataError, match="90 files then, 91 now"):
        check_record(record)
    (tmp_path / "f" / "test" / "3" / "new.png").unlink()
    first = image_files(tmp_path / "f" / "train")[0]
    Image.fromarray(255 - small.images[0]).save(first)  # same name, new pixels
    with pytest.raises(DataError, match="the data changed"):
        load_from_record(record)


def test_progress_bars_go_to_stderr_only(tmp_path, digit_files, capsys):
    root, _, _ = digit_files
    load_data_spec(root / "train.csv", DataOptions(test_data=str(root / "test.csv")),
                   progress=True)
    load_data_spec(root / "png", DataOptions(image_size=8), progress=True)
    assert capsys.readouterr().out == ""
