"""`softmaxlab data list|fetch|info|export`: what each prints and writes, exports read back by our
own readers, torchvision's file layout, and clean errors (exit 2, one message, no traceback)."""

from __future__ import annotations

import gzip
import json
import string
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import make_idx_files, routes_for
from named_helpers import accept_emnist, accept_gz, make_emnist_zip, make_qmnist_files
from softmaxlab.cli import main
from softmaxlab.data import SPECS, DataOptions, load_data_spec, load_dataset, read_idx
from softmaxlab.data.catalog import describe
from softmaxlab.data.idx import read_bytes
from softmaxlab.data.sources import where
from softmaxlab.data.writers import class_folder_names

pytestmark = pytest.mark.usefixtures("isolated_data_env")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``softmaxlab *argv`` in-process; returns (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def hidden(folder: Path) -> list[str]:
    """Temporary files or folders (dot names) left anywhere under ``folder``."""
    return sorted(str(p) for p in folder.rglob(".*"))


@pytest.fixture
def emnist(tmp_path, monkeypatch):
    """A tiny EMNIST gzip.zip (letters: 52/26, digits: 20/10) as a file:// mirror the emnist-*
    specs accept; returns (the zip, the expected arrays per split)."""
    archive = tmp_path / "nist" / "gzip.zip"
    expected = make_emnist_zip(archive, {"letters": (52, 26), "digits": (20, 10)})
    accept_emnist(monkeypatch, archive, mirrors=(archive.parent.as_uri(),))
    return archive, expected


# --------------------------------------------------------------------------- list


def test_list_names_every_dataset_and_where_it_would_go(capsys, emnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./data/<Name>/raw
    code, out, _ = run_cli(capsys, "data", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "CLASSES", "TRAIN", "TEST", "LICENCE", "HERE", "WHERE"]
    for name, spec in SPECS.items():
        row = next(line for line in lines if line.startswith(name + " "))
        if where(spec).found:  # only Debian's Fashion-MNIST package, where it is installed
            assert name == "fashion-mnist" and row.endswith(f"  yes   {where(spec).found}")
        else:
            assert row.endswith(f"  no    downloads into {where(spec).target}")
    assert next(line for line in lines if line.startswith("kmnist ")).split()[1:5] == [
        "10", "60000", "10000", "CC"]
    assert "emnist-letters: labels 1-26 in the files, 0-25 here (a-z)" in out
    assert "qmnist: test set: the first 10,000" in out

    load_dataset("emnist-letters")  # from the file:// mirror: now the zip and 4 files are here
    code, out, _ = run_cli(capsys, "data", "list", "--json")
    entries = {e["name"]: e for e in json.loads(out)}
    assert set(entries) == set(SPECS)
    letters, digits = entries["emnist-letters"], entries["emnist-digits"]
    assert letters["here"] and letters["found"] == str(where(SPECS["emnist-letters"]).target)
    assert digits["here"] and digits["found"] is None and digits["archive"].endswith("gzip.zip")
    assert letters["class_names"] == list(string.ascii_lowercase)
    assert not entries["kmnist"]["here"] and entries["kmnist"]["licence"] == "CC BY-SA 4.0"


def test_list_with_a_data_dir_looks_only_there(capsys, tmp_path):
    folder = make_idx_files(tmp_path / "d", n_train=20, n_test=10)
    code, out, _ = run_cli(capsys, "data", "list", "--data-dir", str(folder), "--json")
    assert code == 0
    entries = {e["name"]: e for e in json.loads(out)}
    # the standard names are found (verified when loaded); EMNIST's and QMNIST's are others
    assert [n for n, e in entries.items() if e["here"]] == ["fashion-mnist", "mnist", "kmnist"]


# --------------------------------------------------------------------------- fetch


def test_fetch_downloads_verifies_then_offline_works(capsys, tmp_path, monkeypatch, serve):
    source = make_idx_files(tmp_path / "source", n_train=20, n_test=10)
    mirror = serve(routes_for(source))
    accept_gz(monkeypatch, "kmnist", source)  # its own mirror is the real one: --mirror instead
    code, out, err = run_cli(capsys, "data", "fetch", "kmnist", "--mirror", mirror.url,
                             "--no-progress")
    assert code == 0, err
    cache = where(SPECS["kmnist"]).target
    assert out == (f"kmnist: 20 train / 10 test images, 10 classes, checked against the "
                   f"published md5s, in {cache}\n")
    assert len(mirror.requests) == 4 and hidden(cache) == []
    code, out, err = run_cli(capsys, "data", "fetch", "kmnist", "--offline")
    assert code == 0 and len(mirror.requests) == 4


def test_fetch_emnist_takes_the_split_out_of_the_zip(capsys, emnist):
    code, out, err = run_cli(capsys, "data", "fetch", "emnist-letters", "emnist-digits")
    assert code == 0, err
    assert "emnist-letters: 52 train / 26 test images, 26 classes, taken from gzip.zip, " \
           "checked against its published md5" in out
    assert "emnist-digits: 20 train / 10 test images" in out


def test_fetch_with_a_bad_md5_exits_2_and_keeps_nothing(capsys, tmp_path, monkeypatch, serve):
    source = make_idx_files(tmp_path / "source", n_train=20, n_test=10)
    impostor = make_idx_files(tmp_path / "impostor", n_train=20, n_test=10, seed=5)
    mirror = serve(routes_for(impostor))
    accept_gz(monkeypatch, "kmnist", source, mirrors=(mirror.url,))
    code, out, err = run_cli(capsys, "data", "fetch", "kmnist")
    assert code == 2 and out == ""
    assert err.startswith("softmaxlab data: error: kmnist not found")
    assert f"{mirror.url}train-images-idx3-ubyte.gz: checksum mismatch" in err
    assert "Traceback" not in err
    cache = where(SPECS["kmnist"]).target
    assert not cache.exists() or list(cache.iterdir()) == []


def test_fetch_an_unknown_name_downloads_nothing(capsys, serve):
    mirror = serve({})
    code, _, err = run_cli(capsys, "data", "fetch", "mnist", "nope", "--mirror", mirror.url)
    assert code == 2 and mirror.requests == []
    assert "unknown dataset 'nope'; choose one of fashion-mnist, mnist, kmnist" in err


# --------------------------------------------------------------------------- info


@pytest.mark.usefixtures("emnist")
def test_info_of_a_named_dataset(capsys):
    code, out, err = run_cli(capsys, "data", "info", "emnist-letters", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["image_shape"] == [28, 28] and info["num_classes"] == 26
    assert info["class_names"] == list(string.ascii_lowercase)
    assert info["splits"]["train"]["per_class"] == [2] * 26
    assert info["splits"]["test"]["per_class"] == [1] * 26
    assert [f["matches"] for f in info["files"]] == ["archive"] * 4
    assert Path(info["files"][0]["path"]).name == "emnist-letters-train-images-idx3-ubyte.gz"
    code, out, _ = run_cli(capsys, "data", "info", "emnist-letters")
    assert out.startswith("emnist-letters (a named dataset): 28x28 uint8 images, 26 classes\n")
    assert ["a", "2", "1"] in [line.split() for line in out.splitlines()]
    assert "note: images stored transposed" in out


def test_info_of_your_own_data_and_its_flags(capsys, tmp_path):
    rows = ["label," + ",".join(f"pixel{j}" for j in range(1, 5))]
    rows += [f"{i % 3},{i},{2 * i},0,255" for i in range(12)]
    csv = tmp_path / "tiny.csv"
    csv.write_text("\n".join(rows) + "\n")
    code, out, err = run_cli(capsys, "data", "info", str(csv), "--test-split", "0.25", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["image_shape"] == [2, 2] and info["class_names"] == ["0", "1", "2"]
    assert info["splits"]["train"]["per_class"] == [3, 3, 3]
    assert info["splits"]["test"]["per_class"] == [1, 1, 1]
    assert info["test_from"] == "held-out"
    assert info["sources"]["train"]["checksum"].startswith("sha256:")
    code, out, _ = run_cli(capsys, "data", "info", str(csv))
    assert "test set: held out from the training data" in out
    code, _, err = run_cli(capsys, "data", "info", "mnist", "--test-split", "0.5")
    assert code == 2 and "--test-split apply to your own data, not to the named dataset" in err


# --------------------------------------------------------------------------- export


def _read_back(layout: str, folder: Path, name: str):
    """The (train, test) our own readers read from an export."""
    if layout == "idx":
        spec, options = f"idx:{folder}", None
    elif layout == "png":
        spec, options = f"folder:{folder}", None
    else:
        spec = f"csv:{folder}/{name}_train.csv"
        options = DataOptions(test_data=f"csv:{folder}/{name}_test.csv")
    train, test, _ = load_data_spec(spec, options)
    return train, test


@pytest.mark.parametrize("layout", ["idx", "csv", "png"])
def test_exports_read_back_give_the_same_arrays(capsys, tmp_path, emnist, layout):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "data", "export", "emnist-letters", str(out_dir),
                             "--layout", layout)
    assert code == 0, err
    assert f"of emnist-letters ({layout}) into {out_dir}" in out and "read it back with" in out
    original = load_dataset("emnist-letters")
    back = _read_back(layout, out_dir, "emnist-letters")
    if layout != "png":  # IDX and CSV keep the order: the very same arrays
        assert describe(*back)["splits"] == describe(*original)["splits"]
    for ds, got in zip(original, back):  # each class's images, in order, under its name
        assert len(got) == len(ds)
        names = list(got.class_names)
        for k, name in enumerate(ds.class_names):
            mine = ds.images[ds.labels == k].numpy()
            theirs = got.images[got.labels == (names.index(name) if layout == "png" else k)]
            np.testing.assert_array_equal(theirs.numpy(), mine)
    assert hidden(out_dir) == []


def test_png_export_names_class_folders_and_keeps_their_order(capsys, tmp_path, monkeypatch,
                                                               serve):
    source = make_idx_files(tmp_path / "source", n_train=20, n_test=10)
    accept_gz(monkeypatch, "kmnist", source)
    out_dir = tmp_path / "png"
    code, _, err = run_cli(capsys, "data", "export", "kmnist", str(out_dir), "--layout", "png",
                           "--data-dir", str(source))
    assert code == 0, err
    assert sorted(p.name for p in (out_dir / "train").iterdir()) == sorted(
        SPECS["kmnist"].class_names)
    assert sorted(p.name for p in (out_dir / "train" / "ki").iterdir()) == ["01.png", "11.png"]
    train, _ = _read_back("png", out_dir, "kmnist")  # classes sorted by name: ha, ki, ma, ...
    original, _ = load_dataset("kmnist", data_dir=source)
    k_back, k = train.class_names.index("ki"), original.class_names.index("ki")
    np.testing.assert_array_equal(train.images[train.labels == k_back].numpy(),
                                  original.images[original.labels == k].numpy())
    # names that differ only in case (EMNIST byclass, bymerge, balanced): numbered, in order
    balanced = class_folder_names(SPECS["emnist-balanced"].class_names)
    assert balanced[:2] == ["00-0", "01-1"] and balanced[10] == "10-A" and balanced[36] == "36-a"
    assert sorted(balanced) == balanced
    assert class_folder_names(("a/b", "c")) == ["0-a_b", "1-c"]


def test_torchvision_layout_has_torchvisions_file_names_and_contents(capsys, tmp_path,
                                                                      tiny_idx_dir, emnist,
                                                                      monkeypatch):
    # the file names torchvision's classes check (raw_folder + resources / images_file,
    # labels_file), written out here rather than taken from softmaxlab's specs
    standard = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte"]
    letters = [f"emnist-letters-{s}-{k}" for s in ("train", "test")
               for k in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    qmnist = ["qmnist-train-images-idx3-ubyte", "qmnist-train-labels-idx2-int",
              "qmnist-test-images-idx3-ubyte", "qmnist-test-labels-idx2-int"]
    qsource = tmp_path / "q"
    make_qmnist_files(qsource, n_train=20, n_test=30)
    accept_gz(monkeypatch, "qmnist", qsource, test_first=10)
    archive, _ = emnist
    root = tmp_path / "root"
    for name, folder, files, data_dir in (("fashion-mnist", "FashionMNIST", standard, tiny_idx_dir),
                                          ("emnist-letters", "EMNIST", letters, None),
                                          ("qmnist", "QMNIST", qmnist, qsource)):
        extra = ["--data-dir", str(data_dir)] if data_dir else []
        code, out, err = run_cli(capsys, "data", "export", name, str(root), "--layout",
                                 "torchvision", *extra)
        assert code == 0, err
        raw = root / folder / "raw"
        assert sorted(p.name for p in raw.iterdir()) == sorted(files), name
        assert f"torchvision.datasets.{folder}(root=\"{root}\"" in out
        for f in files:
            if data_dir:
                original = read_bytes(data_dir / f"{f}.gz")
            else:  # EMNIST: the zip's member, as NIST made it (transposed, letters 1-26)
                with zipfile.ZipFile(archive) as z:
                    original = gzip.decompress(z.read(f"gzip/{f}.gz"))
            assert (raw / f).read_bytes() == original, f  # uncompressed, byte for byte
    labels = read_idx(root / "EMNIST" / "raw" / letters[1])
    assert (int(labels.min()), int(labels.max())) == (1, 26)  # as torchvision expects them
    qlabels = read_idx(root / "QMNIST" / "raw" / "qmnist-test-labels-idx2-int")
    assert qlabels.shape == (30, 8)  # the whole test file: torchvision takes test10k itself
    assert sorted(p.name for p in root.iterdir()) == ["EMNIST", "FashionMNIST", "QMNIST"]
    assert hidden(root) == []


def test_export_never_overwrites_without_force(capsys, tmp_path, tiny_idx_dir):
    out_dir = tmp_path / "out"
    args = ["data", "export", "fashion-mnist", str(out_dir), "--data-dir", str(tiny_idx_dir)]
    assert run_cli(capsys, *args, "--layout", "csv")[0] == 0
    before = (out_dir / "fashion-mnist_train.csv").read_bytes()
    (out_dir / "fashion-mnist_test.csv").write_text("mine")
    code, out, err = run_cli(capsys, *args, "--layout", "csv")
    assert code == 2 and out == ""
    assert err == (f"softmaxlab data: error: {out_dir / 'fashion-mnist_train.csv'} exists (and 1 "
                   "more); give another folder, or --force to replace what the export writes\n")
    assert (out_dir / "fashion-mnist_test.csv").read_text() == "mine"
    assert run_cli(capsys, *args, "--layout", "csv", "--force")[0] == 0
    assert (out_dir / "fashion-mnist_train.csv").read_bytes() == before
    assert (out_dir / "fashion-mnist_test.csv").read_text().startswith("label,pixel1,")

    # png: the split folders are replaced whole with --force (a stray file goes with them)
    assert run_cli(capsys, *args, "--layout", "png")[0] == 0
    (out_dir / "train" / "stray.txt").write_text("x")
    assert run_cli(capsys, *args, "--layout", "png")[0] == 2
    assert (out_dir / "train" / "stray.txt").exists()
    assert run_cli(capsys, *args, "--layout", "png", "--force")[0] == 0
    assert not (out_dir / "train" / "stray.txt").exists()
    assert hidden(out_dir) == []


def test_an_export_that_fails_midway_leaves_nothing(capsys, tmp_path, tiny_idx_dir, monkeypatch):
    from PIL import Image

    saved = []
    real_save = Image.Image.save

    def failing_save(self, fp, *args, **kwargs):
        if len(saved) == 5:
            raise OSError(28, "No space left on device")
        saved.append(fp)
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "data", "export", "fashion-mnist", str(out_dir), "--layout",
                           "png", "--data-dir", str(tiny_idx_dir))
    assert code == 2
    assert err.startswith(f"softmaxlab data: error: cannot write {out_dir / 'train'}: No space "
                          "left on device; free some space")
    assert list(out_dir.iterdir()) == []  # neither train/ nor a temporary folder


@pytest.mark.parametrize("argv, message", [
    (["export", "fashion-mnist", "DIR", "--layout", "jpeg"], "invalid choice: 'jpeg'"),
    (["export", "fashion-mnist", "DIR"], "the following arguments are required: --layout"),
    (["export", "csv:x.csv", "DIR", "--layout", "idx"], "unknown dataset 'csv:x.csv'"),
    (["info", "nope:thing"], "unknown data kind 'nope'"),
    (["fetch"], "the following arguments are required: NAME"),
])
def test_bad_input_exits_2_in_one_message(capsys, tmp_path, argv, message):
    argv = [str(tmp_path / "out") if a == "DIR" else a for a in argv]
    code, out, err = run_cli(capsys, "data", *argv)
    assert code == 2 and out == "" and message in err and "Traceback" not in err
