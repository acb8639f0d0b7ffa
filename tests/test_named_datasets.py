"""The MNIST family by name: KMNIST, EMNIST's six splits, QMNIST — their published facts, their
layouts (EMNIST's zip and transposed images, letters 1-26, QMNIST's 2-D labels and test10k),
verified downloads from a mirror on 127.0.0.1, and training on EMNIST's transposed view."""

from __future__ import annotations

import dataclasses
import gzip
import json
import string
import zipfile

import numpy as np
import pytest
import torch

from conftest import make_idx_files, routes_for
from named_helpers import accept_emnist, accept_gz, idx_bytes, make_emnist_zip, make_qmnist_files
from softmaxlab.cli import main
from softmaxlab.config import TrainConfig
from softmaxlab.data import (
    SPECS,
    ChecksumError,
    DataNotFoundError,
    IDXError,
    ImageDataset,
    load_dataset,
    locate,
    text_labels,
)
from softmaxlab.data.sources import where
from softmaxlab.runner import Session

pytestmark = pytest.mark.usefixtures("isolated_data_env", "one_torch_thread")

EMNIST_SPLITS = ("balanced", "byclass", "bymerge", "digits", "letters", "mnist")


# --------------------------------------------------------------------------- the published facts


def test_the_specs_hold_the_loaders_facts():
    """URLs, md5s, class names and sizes as torchvision's and TFDS's loaders give them."""
    kmnist = SPECS["kmnist"]
    assert kmnist.mirrors == ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",)
    assert kmnist.md5_gz == {"train-images-idx3-ubyte": "bdb82020997e1d708af4cf47b453dcf7",
                             "train-labels-idx1-ubyte": "e144d726b3acfaa3e44228e80efcd344",
                             "t10k-images-idx3-ubyte": "5c965bf0a639b31b8f53240b1b52f4d7",
                             "t10k-labels-idx1-ubyte": "7320c461ea6c1c855c0b718fb2a4b134"}
    assert kmnist.class_names == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")

    sizes = {"byclass": (697932, 116323), "bymerge": (697932, 116323),
             "balanced": (112800, 18800), "letters": (88800, 14800),
             "digits": (240000, 40000), "mnist": (60000, 10000)}
    merged = set("cijklmopsuvwxyz")  # torchvision's _merged_classes
    every = sorted(string.digits + string.ascii_letters)
    names = {"byclass": every, "bymerge": [c for c in every if c not in merged],
             "balanced": [c for c in every if c not in merged],
             "letters": list(string.ascii_lowercase),  # torchvision: ["N/A"] + a-z, 1-based
             "digits": list(string.digits), "mnist": list(string.digits)}
    for split in EMNIST_SPLITS:
        spec = SPECS[f"emnist-{split}"]
        assert spec.archive.name == "gzip.zip" and spec.archive.prefix == "gzip/"
        assert spec.archive.md5 == "58c8d27c78d21e728a6bc7b3cc06412e"
        assert spec.mirrors[0] + spec.archive.name == \
            "https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/gzip.zip"
        assert spec.sizes == sizes[split] and list(spec.class_names) == names[split]
        assert spec.transposed and spec.cache_folder == "emnist"
        assert spec.files["test_labels"] == f"emnist-{split}-test-labels-idx1-ubyte"
        assert spec.label_offset == (1 if split == "letters" else 0)
    assert len(SPECS["emnist-byclass"].class_names) == 62
    assert len(SPECS["emnist-balanced"].class_names) == 47

    qmnist = SPECS["qmnist"]
    base = "https://raw.githubusercontent.com/facebookresearch/qmnist/master/"
    assert qmnist.mirrors == (base,)
    assert qmnist.md5_gz == {"qmnist-train-images-idx3-ubyte": "ed72d4157d28c017586c42bc6afe6370",
                             "qmnist-train-labels-idx2-int": "0058f8dd561b90ffdd0f734c6a30e5e4",
                             "qmnist-test-images-idx3-ubyte": "1394631089c404de565df7b7aeaf9412",
                             "qmnist-test-labels-idx2-int": "5b5b05890a5e13444e108efe57b788aa"}
    assert (qmnist.label_column, qmnist.test_first, qmnist.sizes) == (0, 10000, (60000, 10000))


# --------------------------------------------------------------------------- KMNIST: plain IDX


def test_kmnist_downloads_verified_from_a_mirror_with_its_class_names(tmp_path, serve,
                                                                       monkeypatch):
    source = make_idx_files(tmp_path / "source", n_train=40, n_test=20)
    mirror = serve(routes_for(source, "/kmnist/"))
    spec = accept_gz(monkeypatch, "kmnist", source, mirrors=(mirror.url + "kmnist/",))
    train, test = load_dataset("kmnist")
    assert (len(train), len(test)) == (40, 20) and len(mirror.requests) == 4
    assert train.images.is_contiguous()  # nothing to undo: the plain layout
    assert text_labels(train.labels[:3], train.class_names) == ["o", "ki", "su"]
    assert where(spec).found == where(spec).target  # the cache: ~/.cache/softmaxlab/kmnist
    assert where(spec).target.name == "kmnist"


def test_a_bad_md5_from_the_mirror_is_rejected_and_nothing_is_kept(tmp_path, serve, monkeypatch):
    source = make_idx_files(tmp_path / "source", n_train=20, n_test=10)
    mirror = serve(routes_for(source))
    accept_gz(monkeypatch, "kmnist", source, mirrors=(mirror.url,))
    spec = SPECS["kmnist"]
    md5s = dict(spec.md5_gz, **{"t10k-images-idx3-ubyte": "0" * 32})
    monkeypatch.setitem(SPECS, "kmnist", dataclasses.replace(spec, md5_gz=md5s))
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("kmnist")
    message = str(err.value)
    assert f"{mirror.url}t10k-images-idx3-ubyte.gz: checksum mismatch" in message
    assert f"expected {'0' * 32}" in message
    cache = where(SPECS["kmnist"]).target
    # the files before it arrived (each verified); none of the rejected one, no temp file
    assert sorted(p.name for p in cache.iterdir()) == ["train-images-idx3-ubyte.gz",
                                                       "train-labels-idx1-ubyte.gz"]


# --------------------------------------------------------------------------- EMNIST: one zip


@pytest.fixture
def emnist(tmp_path, monkeypatch, serve):
    """A tiny EMNIST gzip.zip (letters: 52/26 images, digits: 20/10) served on 127.0.0.1 and
    accepted by the emnist-* specs; yields (mirror, expected arrays per split)."""
    archive = tmp_path / "nist" / "gzip.zip"
    expected = make_emnist_zip(archive, {"letters": (52, 26), "digits": (20, 10)})
    mirror = serve({"/EMNIST/gzip.zip": archive.read_bytes()})
    accept_emnist(monkeypatch, archive, mirrors=(mirror.url + "EMNIST/",))
    return mirror, expected


def test_emnist_letters_from_the_zip_upright_as_a_view_labels_a_to_z(emnist):
    mirror, expected = emnist
    train, test = load_dataset("emnist-letters")
    assert mirror.requests == ["/EMNIST/gzip.zip"]
    for split, ds in (("train", train), ("test", test)):
        np.testing.assert_array_equal(ds.images.numpy(), expected["letters"][f"{split}_images"])
        np.testing.assert_array_equal(ds.labels.numpy(), expected["letters"][f"{split}_labels"])
    # the stored (transposed) array, viewed upright: no copy was made
    assert train.images.dtype == torch.uint8 and not train.images.is_contiguous()
    assert train.images.stride() == (784, 1, 28)
    assert train.images.transpose(1, 2).is_contiguous()
    # the files' labels 1-26 are 0-25 here, named a-z
    assert train.class_names == tuple(string.ascii_lowercase)
    assert (int(train.labels.min()), int(train.labels.max())) == (0, 25)
    assert text_labels(train.labels[:3], train.class_names) == ["a", "b", "c"]
    cache = where(SPECS["emnist-letters"]).target
    assert sorted(p.name for p in cache.iterdir()) == [
        "emnist-letters-test-images-idx3-ubyte.gz", "emnist-letters-test-labels-idx1-ubyte.gz",
        "emnist-letters-train-images-idx3-ubyte.gz", "emnist-letters-train-labels-idx1-ubyte.gz",
        "gzip.zip"]


def test_the_other_splits_come_from_the_kept_zip_even_offline(emnist):
    mirror, expected = emnist
    load_dataset("emnist-letters")
    train, test = load_dataset("emnist-digits", offline=True)  # no download: the zip is here
    assert mirror.requests == ["/EMNIST/gzip.zip"]
    np.testing.assert_array_equal(test.images.numpy(), expected["digits"]["test_images"])
    assert train.class_names == tuple(string.digits) and not train.images.is_contiguous()
    # a split the zip lacks: the zip is named, nothing half-written stays
    with pytest.raises(Exception, match="no member gzip/emnist-mnist-train-images") as err:
        load_dataset("emnist-mnist", offline=True)
    assert "delete or replace it" in str(err.value)
    assert not list(where(SPECS["emnist-mnist"]).target.glob("emnist-mnist*"))
    assert not list(where(SPECS["emnist-mnist"]).target.glob(".*"))


def test_a_zip_with_the_wrong_md5_is_rejected_and_nothing_is_kept(emnist, monkeypatch):
    mirror, _ = emnist
    spec = SPECS["emnist-letters"]
    wrong = dataclasses.replace(spec.archive, md5="f" * 32)
    monkeypatch.setitem(SPECS, "emnist-letters", dataclasses.replace(spec, archive=wrong))
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("emnist-letters")
    message = str(err.value)
    assert f"{mirror.url}EMNIST/gzip.zip: checksum mismatch (md5 of gzip.zip is" in message
    assert f"expected {'f' * 32}" in message and "download gzip.zip into" in message
    cache = where(spec).target
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_damaged_zip_already_there_is_named(emnist):
    cache = where(SPECS["emnist-letters"]).target
    cache.mkdir(parents=True)
    (cache / "gzip.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ChecksumError, match="gzip.zip: checksum mismatch .* delete or replace it"):
        load_dataset("emnist-letters", offline=True)


def test_emnist_offline_without_the_zip_says_how_to_get_it(emnist):
    mirror, _ = emnist
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("emnist-letters", offline=True)
    assert mirror.requests == []
    assert "Downloading is off" in str(err.value) and "download gzip.zip into" in str(err.value)


def test_a_letters_label_outside_1_to_26_is_named(tmp_path, monkeypatch):
    archive = tmp_path / "gzip.zip"
    make_emnist_zip(archive, {"letters": (52, 26)})
    with zipfile.ZipFile(archive) as z:
        members = {n: z.read(n) for n in z.namelist()}
    labels = np.zeros(26, np.uint8)  # 0: torchvision's "N/A", never a letter
    members["gzip/emnist-letters-test-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels))
    with zipfile.ZipFile(archive, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    accept_emnist(monkeypatch, archive)
    with pytest.raises(IDXError, match=r"label 0 is out of range: emnist-letters has 26 classes "
                                       r"\(labels 1 to 26\)"):
        load_dataset("emnist-letters", data_dir=tmp_path, offline=True)


# --------------------------------------------------------------------------- QMNIST


def test_qmnist_class_column_and_test10k(tmp_path, serve, monkeypatch):
    source = tmp_path / "qmnist"
    stored = make_qmnist_files(source, n_train=40, n_test=50)
    mirror = serve(routes_for(source, names=list(SPECS["qmnist"].files.values())))
    # the real test file holds 60,000 (test10k: the first 10,000); here 50, of which 30
    accept_gz(monkeypatch, "qmnist", source, mirrors=(mirror.url,), test_first=30)
    train, test = load_dataset("qmnist")
    assert len(mirror.requests) == 4
    assert (len(train), len(test)) == (40, 30)
    np.testing.assert_array_equal(train.labels.numpy(), stored["train_labels"][:, 0])
    np.testing.assert_array_equal(test.labels.numpy(), stored["test_labels"][:30, 0])
    np.testing.assert_array_equal(test.images.numpy(), stored["test_images"][:30])
    assert test.images.is_contiguous() and train.class_names == SPECS["mnist"].class_names


def test_qmnist_labels_must_be_2d_integers(tmp_path, monkeypatch):
    source = tmp_path / "qmnist"
    make_qmnist_files(source, n_train=20, n_test=10)
    (source / "qmnist-train-labels-idx2-int.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros((20, 8), np.float32))))
    accept_gz(monkeypatch, "qmnist", source)
    with pytest.raises(IDXError, match="expected integer labels, the header says float32"):
        load_dataset("qmnist", data_dir=source)


# --------------------------------------------------------------------------- the transposed view


def _pair(n: int, seed: int, num_classes: int = 26) -> tuple[ImageDataset, ImageDataset]:
    """The same upright images twice: as a transposed view of stored (transposed) bytes, as
    EMNIST loads them, and as a contiguous copy."""
    from conftest import make_dataset

    ds = make_dataset(n, seed, num_classes=num_classes)
    stored = ds.images.transpose(1, 2).contiguous()
    view = ImageDataset(stored.transpose(1, 2), ds.labels, ds.class_names, "view")
    assert not view.images.is_contiguous() and torch.equal(view.images, ds.images)
    return view, ImageDataset(ds.images.clone(), ds.labels, ds.class_names, "copy")


@pytest.mark.parametrize("changes", [
    {"impl": "scratch"},  # the fast path (FastSGD)
    {"impl": "scratch", "standardize": True, "momentum": 0.9, "augment": True},
    {"impl": "concise"},  # the plain loop
    {"impl": "scratch", "optimizer": "lbfgs", "lbfgs_iters": 3},  # the full batch
])
def test_training_on_the_transposed_view_equals_training_on_a_copy(changes):
    view_train, copy_train = _pair(130, 0)
    view_test, copy_test = _pair(52, 1)
    config = TrainConfig(epochs=2, batch_size=16, seed=3, **changes)
    a = Session(config, view_train, view_test)
    b = Session(config, copy_train, copy_test)
    ha, hb = a.fit(), b.fit()
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in ha] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in hb]
    wa, wb = a.inference_model(), b.inference_model()
    assert torch.equal(wa.W, wb.W) and torch.equal(wa.b, wb.b)
    x_view, x_copy = view_test.to_float(), copy_test.to_float()
    assert x_view.is_contiguous() and torch.equal(x_view, x_copy)
    assert torch.equal(wa.predict_proba(x_view), wb.predict_proba(x_copy))


def test_batches_of_the_view_are_contiguous_and_upright():
    view, copy = _pair(40, 2)
    for (xv, yv), (xc, yc) in zip(view.batches(16, shuffle=True, seed=1),
                                  copy.batches(16, shuffle=True, seed=1)):
        assert xv.is_contiguous() and torch.equal(xv, xc) and torch.equal(yv, yc)
    for (xv, _), (xc, _) in zip(view.batches(16), copy.batches(16)):
        assert xv.is_contiguous() and torch.equal(xv, xc)


# --------------------------------------------------------------------------- the commands


def test_train_resume_evaluate_report_show_on_emnist_letters(emnist, tmp_path, capsys):
    """--dataset emnist-letters through the commands that read the data again (resume,
    evaluate, report) and show."""
    out = tmp_path / "run"
    common = ["--no-progress"]
    assert main(["train", "--dataset", "emnist-letters", "--epochs", "1", "--batch-size", "16",
                 "--out", str(out), "--no-report", *common]) == 0
    assert "on emnist-letters (52 train / 26 test images" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"]["class_names"] == list(string.ascii_lowercase)
    assert main(["train", "--resume", str(out), "--epochs", "2", "--offline", *common]) == 0
    resumed = json.loads((out / "history.json").read_text())
    fresh = tmp_path / "fresh"
    assert main(["train", "--dataset", "emnist-letters", "--epochs", "2", "--batch-size", "16",
                 "--out", str(fresh), "--no-report", "--offline", *common]) == 0
    again = json.loads((fresh / "history.json").read_text())
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in again]
    capsys.readouterr()
    assert main(["evaluate", str(out), "--offline", *common]) == 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(again[-1]["test_acc"])
    assert main(["report", str(out), "--offline", *common]) == 0
    assert "emnist-letters" in (out / "report.html").read_text()
    grid = tmp_path / "grid.png"
    assert main(["show", "--dataset", "emnist-letters", "--n", "4", "--out", str(grid),
                 "--offline", *common]) == 0
    assert grid.read_bytes()[:4] == b"\x89PNG"
    assert "4 train images of emnist-letters" in capsys.readouterr().out


def test_locate_gives_the_extracted_files(emnist):
    paths = locate(SPECS["emnist-letters"])
    assert {p.name for p in paths.values()} == {
        f"{n}.gz" for n in SPECS["emnist-letters"].files.values()}
