"""Bad input in each format: one line naming the file and the line, row, array element or image.

Every error here is a softmaxlab error (exit code 2 on the command line): ``DataError`` for bad
data, ``ConfigError`` for a bad spec or option.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from formats_helpers import (
    Arrays,
    digits,
    encode,
    write_csv,
    write_idx_dir,
    write_image_folder,
    write_npz,
    write_parquet,
)
from softmaxlab.data import DataOptions, formats, load_data_spec, parse_image_shape, parse_spec
from softmaxlab.errors import EXIT_BAD_INPUT, ConfigError, DataError, SoftmaxlabError

NAMES = tuple(str(k) for k in range(10))


@pytest.fixture(scope="module")
def arrays() -> tuple[Arrays, Arrays]:
    tr, te = digits()
    return tr.take(np.arange(200)), te.take(np.arange(100))


def fails(error: type[SoftmaxlabError], spec, *fragments: str, **options) -> str:
    """Load ``spec``; it must raise ``error`` with a one-line message holding ``fragments``."""
    with pytest.raises(error) as info:
        load_data_spec(spec, DataOptions(**options))
    message = str(info.value)
    assert "\n" not in message, message
    assert info.value.exit_code == EXIT_BAD_INPUT
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def csv_with(tmp_path: Path, arrays, line: int, text: str | None) -> Path:
    """The digits CSV with line ``line`` (1 = the header) replaced by ``text`` (None: removed)."""
    path = write_csv(tmp_path / "d.csv", arrays[0])
    lines = path.read_text().splitlines()
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def row(arrays, i: int) -> list[str]:
    tr = arrays[0]
    return [str(tr.labels[i]), *map(str, tr.images[i].ravel())]


# --------------------------------------------------------------------------- CSV


def test_csv_row_with_a_missing_value(tmp_path, arrays):
    path = csv_with(tmp_path, arrays, 17, ",".join(row(arrays, 15)[:-1]))
    fails(DataError, path, f"{path} line 17: 64 values, expected 65 = 1 label + 64 pixels")


def test_csv_row_with_an_extra_value(tmp_path, arrays):
    path = csv_with(tmp_path, arrays, 9, ",".join(row(arrays, 7) + ["0"]))
    fails(DataError, path, f"{path} line 9: 66 values, expected 65")


def test_csv_header_missing_a_column(tmp_path, arrays):
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 65) if i != 30)
    path = csv_with(tmp_path, arrays, 1, header)
    fails(DataError, path, f"{path} line 1: column 31 is 'pixel31', expected 'pixel30': a pixel "
          "column is missing")


def test_csv_with_a_pixel_count_that_is_no_square(tmp_path, arrays):
    header = "label," + ",".join(f"col{i}" for i in range(63))
    path = csv_with(tmp_path, arrays, 1, header)
    fails(DataError, path, f"{path} line 1: 63 pixel columns is not a square number",
          "--image-shape")
    fails(DataError, path, "line 1: 63 pixel columns, but --image-shape 8,8 needs 64",
          image_shape=(8, 8))


@pytest.mark.parametrize("value", ["1.5", "abc", "", "0x10"])
def test_csv_non_integer_pixel(tmp_path, arrays, value):
    values = row(arrays, 40)
    values[5] = value
    path = csv_with(tmp_path, arrays, 42, ",".join(values))
    fails(DataError, path, f"{path} line 42: pixel5 (column 6) is {value!r}, not an integer")


@pytest.mark.parametrize("value", ["256", "-1"])
def test_csv_pixel_outside_0_to_255(tmp_path, arrays, value):
    values = row(arrays, 3)
    values[64] = value
    path = csv_with(tmp_path, arrays, 5, ",".join(values))
    fails(DataError, path, f"{path} line 5: pixel64 is {value}, outside 0-255")


def test_csv_negative_label(tmp_path, arrays):
    path = csv_with(tmp_path, arrays, 100, ",".join(["-3", *row(arrays, 98)[1:]]))
    fails(DataError, path, f"{path} line 100: label -3 is negative")


def test_csv_without_header_or_label_column(tmp_path, arrays):
    path = csv_with(tmp_path, arrays, 1, None)
    fails(DataError, path, f"{path} line 1: no header row (the line holds numbers)")
    path = csv_with(tmp_path, arrays, 1, ",".join(f"pixel{i}" for i in range(1, 66)))
    fails(DataError, path, f"{path} line 1: the first column is 'pixel1', expected 'label'")
    (tmp_path / "empty.csv").write_text("")
    fails(DataError, tmp_path / "empty.csv", "empty.csv line 1: no header row")
    (tmp_path / "header.csv").write_text("label,a,b,c,d\n")
    fails(DataError, tmp_path / "header.csv", "header.csv: no rows after the header")


def test_csv_line_numbers_count_blank_lines_and_cross_chunks(tmp_path, arrays, monkeypatch):
    monkeypatch.setattr(formats, "CSV_CHUNK", 7)
    path = write_csv(tmp_path / "d.csv", arrays[0])
    lines = path.read_text().splitlines()
    lines[10:10] = ["", ""]  # two blank lines: skipped, but counted
    lines[150] = lines[150].replace(",", ";", 1)
    path.write_text("\n".join(lines) + "\n")
    fails(DataError, path, f"{path} line 151: 64 values, expected 65")
    lines[150] = lines[150].replace(";", ",", 1)
    lines[180] = lines[180].rsplit(",", 1)[0] + ",300"
    path.write_text("\n".join(lines) + "\n")
    fails(DataError, path, f"{path} line 181: pixel64 is 300, outside 0-255")


def test_a_test_label_outside_the_training_classes(tmp_path, arrays):
    tr, te = arrays
    write_csv(tmp_path / "train.csv", tr.take(np.flatnonzero(tr.labels < 9)))
    nines = np.flatnonzero(te.labels == 9)
    write_csv(tmp_path / "test.csv", te)
    fails(DataError, tmp_path / "train.csv",
          f"{tmp_path / 'test.csv'} line {nines[0] + 2}: label 9 is outside the training set's "
          "classes (labels 0 to 8)", test_data=str(tmp_path / "test.csv"))


def test_a_single_class(tmp_path, arrays):
    tr, _ = arrays
    write_csv(tmp_path / "ones.csv", tr.take(np.flatnonzero(tr.labels == 1)))
    fails(DataError, tmp_path / "ones.csv", "ones.csv: every training example is of class '1'",
          "two classes or more")


def test_a_test_set_of_another_image_size(tmp_path, arrays):
    tr, te = arrays
    write_csv(tmp_path / "train.csv", tr)
    big = Arrays(np.kron(te.images, np.ones((2, 2), np.uint8)), te.labels)
    write_npz(tmp_path / "big.npz", big)
    fails(DataError, tmp_path / "train.csv",
          f"{tmp_path / 'big.npz'}: the test images are 16x16 but the training images are 8x8",
          test_data=str(tmp_path / "big.npz"))


# --------------------------------------------------------------------------- image folders


def test_a_folder_with_no_images(tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "dog").mkdir()
    (tmp_path / "data" / "dog" / "notes.txt").write_text("not an image")
    fails(DataError, f"folder:{tmp_path / 'data'}", f"{tmp_path / 'data' / 'cat'}: no image files")
    fails(DataError, tmp_path / "data" / "dog",
          f"{tmp_path / 'data' / 'dog'}: the folder holds no dataset softmaxlab knows")
    fails(DataError, f"folder:{tmp_path / 'data' / 'dog'}", "dog: no class folders")


def test_a_folder_of_loose_images_or_a_single_class(tmp_path, arrays):
    tr, _ = arrays
    for i in range(3):
        (tmp_path / "loose" / "x").mkdir(parents=True, exist_ok=True)
        (tmp_path / "loose" / f"{i}.png").write_bytes(encode(tr.images[i]))
    shutil.rmtree(tmp_path / "loose" / "x")
    fails(DataError, f"folder:{tmp_path / 'loose'}", "no class folders (it holds 3 images "
          "directly: put each class's images in a sub-folder named after the class)")
    write_image_folder(tmp_path / "one", tr.take(np.flatnonzero(tr.labels == 4)), NAMES)
    fails(DataError, tmp_path / "one", f"{tmp_path / 'one'}: only one class folder ('4')")


def test_undecodable_images_are_skipped_and_listed_or_an_error_with_strict(tmp_path, arrays):
    tr, _ = arrays
    root = write_image_folder(tmp_path / "f", tr, NAMES)
    bad = root / "3" / "broken.png"
    png = encode(tr.images[0])
    bad.write_bytes(png[:len(png) * 2 // 3])  # cut short
    (root / "5" / "text.jpg").write_text("not a picture")
    train, test, record = load_data_spec(root, DataOptions(image_size=8))
    assert len(train) + len(test) == len(tr)
    assert record["n_skipped"] == 2
    assert record["skipped"][0].startswith(f"{bad}: cannot decode the image")
    assert record["skipped"][1].startswith(f"{root / '5' / 'text.jpg'}: not an image format")
    fails(DataError, root, f"{bad}: cannot decode the image", "(and 1 more)", "--strict",
          image_size=8, strict=True)


def test_a_test_class_the_training_set_lacks(tmp_path, arrays):
    tr, te = arrays
    write_image_folder(tmp_path / "f" / "train", tr, NAMES)
    write_image_folder(tmp_path / "f" / "test", te, NAMES)
    (tmp_path / "f" / "test" / "3").rename(tmp_path / "f" / "test" / "three")
    fails(DataError, tmp_path / "f", f"{tmp_path / 'f' / 'test' / 'three'}: the class 'three' "
          "is not among the training classes")


# --------------------------------------------------------------------------- NumPy


def test_an_npz_without_the_expected_arrays(tmp_path, arrays):
    tr, _ = arrays
    np.savez(tmp_path / "a.npz", images=tr.images, labels=tr.labels)
    fails(DataError, tmp_path / "a.npz", f"{tmp_path / 'a.npz'}: no x_train or y_train (it "
          "holds images, labels)")
    np.savez(tmp_path / "b.npz", x_train=tr.images, y_train=tr.labels, x_test=tr.images)
    fails(DataError, tmp_path / "b.npz", "b.npz: x_test without y_test")
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 not really a zip")
    fails(DataError, tmp_path / "c.npz", "c.npz: not a NumPy .npz file")


def test_an_npz_with_mismatched_lengths(tmp_path, arrays):
    tr, _ = arrays
    np.savez(tmp_path / "a.npz", x_train=tr.images, y_train=tr.labels[:-1])
    fails(DataError, tmp_path / "a.npz", f"{tmp_path / 'a.npz'} x_train has 200 images but "
          f"{tmp_path / 'a.npz'} y_train has 199 labels")


def test_npz_arrays_of_the_wrong_kind(tmp_path, arrays):
    tr, _ = arrays
    np.savez(tmp_path / "f.npz", x_train=tr.images / 255.0, y_train=tr.labels)
    fails(DataError, tmp_path / "f.npz", "x_train holds fractional float64 values",
          ".astype('uint8')")
    np.savez(tmp_path / "o.npz", x_train=np.array([tr.images[0], "x"], dtype=object),
             y_train=tr.labels[:2])
    fails(DataError, tmp_path / "o.npz", "o.npz: cannot read the array x_train")
    y = tr.labels.copy()
    y[17] = -1
    np.savez(tmp_path / "y.npz", x_train=tr.images, y_train=y)
    fails(DataError, tmp_path / "y.npz", "y.npz y_train[17]: label -1 is negative")
    np.savez(tmp_path / "h.npz", x_train=tr.images, y_train=np.eye(10)[tr.labels])
    fails(DataError, tmp_path / "h.npz", "(one-hot? save y.argmax(1))")


def test_an_npy_folder_without_labels(tmp_path, arrays):
    tr, _ = arrays
    (tmp_path / "n").mkdir()
    np.save(tmp_path / "n" / "x_train.npy", tr.images)
    fails(DataError, tmp_path / "n", f"{tmp_path / 'n'}: no y_train.npy (it holds x_train.npy)")


# --------------------------------------------------------------------------- Parquet


def test_a_parquet_file_without_an_image_or_label_column(tmp_path, arrays):
    tr, _ = arrays
    write_parquet(tmp_path / "a.parquet", tr, image_column="picture")
    fails(DataError, tmp_path / "a.parquet", f"{tmp_path / 'a.parquet'}: no image column (the "
          "columns are picture, label)")
    write_parquet(tmp_path / "b.parquet", tr, label_column="target")
    fails(DataError, tmp_path / "b.parquet", "b.parquet: no label column (the columns are image, "
          "target)")
    (tmp_path / "c.parquet").write_bytes(b"PAR1 not really")
    fails(DataError, tmp_path / "c.parquet", "c.parquet: not a readable Parquet file")


def test_parquet_labels_outside_the_named_classes(tmp_path, arrays):
    tr, _ = arrays
    labels = tr.labels.copy()
    labels[33] = 10
    write_parquet(tmp_path / "p.parquet", Arrays(tr.images, labels), NAMES)
    fails(DataError, tmp_path / "p.parquet", f"{tmp_path / 'p.parquet'} row 33: label 10 is "
          "outside the 10 classes the file's huggingface metadata names")


def test_parquet_images_that_cannot_be_decoded(tmp_path, arrays):
    tr, _ = arrays
    blobs = [encode(x) for x in tr.images]
    blobs[7] = b"garbage"
    blobs[9] = None
    write_parquet(tmp_path / "p.parquet", tr, NAMES, blobs=blobs)
    train, test, record = load_data_spec(tmp_path / "p.parquet", DataOptions(image_size=8))
    assert len(train) + len(test) == len(tr) - 2 and record["n_skipped"] == 2
    fails(DataError, tmp_path / "p.parquet", f"{tmp_path / 'p.parquet'} row 7: not an image "
          "format Pillow can read (and 1 more)", strict=True, image_size=8)
    assert record["skipped"][1] == f"{tmp_path / 'p.parquet'} row 9: the image has no bytes"


# --------------------------------------------------------------------------- IDX folders


def test_an_idx_folder_with_a_missing_or_mismatched_file(tmp_path, arrays):
    tr, te = arrays
    root = write_idx_dir(tmp_path / "idx", tr, te)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    fails(DataError, f"idx:{root}", "t10k-images-idx3-ubyte.gz is there but not "
          "t10k-labels-idx1-ubyte")
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    _, _, record = load_data_spec(f"idx:{root}")  # no test files: a held-out split
    assert record["test_from"] == "held-out"
    write_idx_dir(root, Arrays(tr.images, tr.labels[:150]))
    fails(DataError, root, "train-images-idx3-ubyte.gz has 200 images but",
          "train-labels-idx1-ubyte.gz has 150 labels")
    (root / "train-labels-idx1-ubyte.gz").unlink()
    fails(DataError, f"idx:{root}", f"{root}: no train-labels-idx1-ubyte (or .gz)")


# --------------------------------------------------------------------------- specs and options


def test_specs_that_cannot_be_read(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    (tmp_path / "x.npy").write_bytes(b"")
    cases = [
        (ConfigError, "tiff:/some/where", "unknown data kind 'tiff'"),
        (ConfigError, "csv:", "names no path after 'csv:'"),
        (ConfigError, "", "the dataset spec is empty"),
        (ConfigError, tmp_path / "data.txt", "cannot tell the format from the extension"),
        (ConfigError, tmp_path / "x.npy", "a .npy file holds one array"),
        (DataError, tmp_path / "nothing.csv", f"{tmp_path / 'nothing.csv'}: no such file or folder"),
        (DataError, f"csv:{tmp_path}", f"{tmp_path}: not a file; csv:PATH takes a file"),
        (DataError, f"folder:{tmp_path / 'data.txt'}", "not a folder; folder:PATH takes a folder"),
        (ConfigError, "fashion-mnist", "load it with softmaxlab.data.load_dataset"),
    ]
    for error, spec, fragment in cases:
        fails(error, spec, fragment)


def test_spec_paths_may_hold_colons_and_commas(tmp_path, arrays):
    folder = tmp_path / "a:b,c"
    folder.mkdir()
    path = write_csv(folder / "x:1,2.csv", arrays[0])
    spec = parse_spec(f"csv:{path}")
    assert spec.kind == "csv" and spec.path == path and str(spec) == f"csv:{path}"
    assert parse_spec(str(path)).kind == "csv"
    assert parse_spec("mnist").named and str(parse_spec("mnist")) == "mnist"
    write_idx_dir(tmp_path / "i", *arrays)
    assert parse_spec(str(tmp_path / "i")).kind == "idx"
    write_image_folder(tmp_path / "f", arrays[0], NAMES)
    assert parse_spec(str(tmp_path / "f")).kind == "folder"


@pytest.mark.parametrize("options, fragment", [
    ({"test_split": 0}, "test_split=0 is not allowed"),
    ({"test_split": 1.5}, "test_split=1.5 is not allowed"),
    ({"split_seed": -1}, "split_seed=-1 is not allowed"),
    ({"image_shape": (28,)}, "image_shape=(28,) is not allowed"),
    ({"image_size": 0}, "image_size=0 is not allowed"),
    ({"invert": "sometimes"}, "invert='sometimes' is not allowed; use one of auto, always, never"),
    ({"trim": "yes"}, "trim='yes' is not allowed"),
])
def test_bad_option_values(options, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        DataOptions(**options)


def test_options_that_do_not_apply_to_the_data(tmp_path, arrays):
    tr, te = arrays
    write_npz(tmp_path / "d.npz", tr, te)
    fails(ConfigError, tmp_path / "d.npz", "--invert applies to decoded images", invert="auto")
    fails(ConfigError, tmp_path / "d.npz", "--test-split applies to data without a test set",
          test_split=0.3)
    write_image_folder(tmp_path / "f", tr, NAMES)
    fails(ConfigError, tmp_path / "f", "--image-shape applies to flat rows", image_shape=(8, 8))
    fails(ConfigError, tmp_path / "d.npz", "a named dataset cannot be the test set",
          test_data="mnist")


def test_too_few_examples_to_hold_out_a_test_set(tmp_path, arrays):
    tr, _ = arrays
    write_csv(tmp_path / "few.csv", tr.take(np.array([0, 1, 2])))  # one image of each class
    fails(DataError, tmp_path / "few.csv", "3 examples are too few to hold out 0.2 of each class")


def test_options_round_trip_and_image_shapes_parse():
    options = DataOptions(test_data="csv:/x.csv", test_split=0.1, split_seed=2,
                          image_shape=(4, 16), image_size=32, invert="auto", trim=True,
                          strict=True)
    assert DataOptions.from_dict(options.to_dict()) == options
    assert parse_image_shape("28,28") == (28, 28) == parse_image_shape("28x28")
    for bad in ("28", "a,b", "0,5", "1,2,3"):
        with pytest.raises(ConfigError, match="--image-shape"):
            parse_image_shape(bad)
    with pytest.raises(ConfigError, match="unknown data options"):
        DataOptions.from_dict({"colour": "red"})


def test_records_that_are_damaged(tmp_path):
    from softmaxlab.data import check_record, load_from_record

    for record in ({}, {"version": 1, "sources": {"train": {"spec": "x"}}}, {"version": 99}):
        for check in (check_record, load_from_record):
            with pytest.raises(DataError, match="record"):
                check(record)


def test_parquet_without_pyarrow_says_how_to_get_it(tmp_path, arrays, monkeypatch):
    write_parquet(tmp_path / "p.parquet", arrays[0])
    for name in ("pyarrow", "pyarrow.compute", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    fails(ConfigError, tmp_path / "p.parquet", "reading Parquet files needs pyarrow",
          "softmaxlab[formats]")
