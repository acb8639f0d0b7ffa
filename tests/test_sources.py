"""Tests for softmaxlab.data.sources and specs: md5 checks, and where the files are looked for."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from conftest import NAMES, leftovers, make_idx_files, make_spec, raw_md5s, register, routes_for
from softmaxlab.data import SPECS, ChecksumError, DataNotFoundError, load_dataset, locate, sources
from softmaxlab.data.specs import FASHION_MNIST, ROLES

pytestmark = pytest.mark.usefixtures("isolated_data_env")


# --------------------------------------------------------------------------- md5 checks


def _gz_md5s(folder: Path) -> dict[str, str]:
    """File name without .gz -> md5 of the .gz file itself, for the four files in ``folder``."""
    return {n: hashlib.md5((folder / f"{n}.gz").read_bytes()).hexdigest() for n in NAMES}


WRONG = {n: "0" * 32 for n in NAMES}


@pytest.mark.parametrize("md5_gz, md5_raw", [
    ("right", "right"),  # the official .gz
    ("wrong", "right"),  # a re-gzipped copy (Debian's)
    ("right", "wrong"),  # a .gz whose content md5 the spec has wrong: the .gz md5 still counts
    ("right", "none"),   # MNIST: only .gz md5s known
])
def test_md5_accepts_the_gz_or_the_raw_md5(tmp_path, monkeypatch, md5_gz, md5_raw):
    folder = make_idx_files(tmp_path / "d")
    pick = {"right": None, "wrong": WRONG, "none": {}}
    spec = make_spec(
        tmp_path,
        md5_gz=pick[md5_gz] if pick[md5_gz] is not None else _gz_md5s(folder),
        md5_raw=pick[md5_raw] if pick[md5_raw] is not None else raw_md5s(folder),
    )
    register(monkeypatch, spec)
    train, _ = load_dataset("tiny", data_dir=folder, offline=True)
    assert len(train) == 120


def test_md5_of_raw_files_is_the_raw_md5(tmp_path, monkeypatch):
    folder = make_idx_files(tmp_path / "raw", gz=False)
    register(monkeypatch, make_spec(tmp_path, md5_raw=raw_md5s(folder), md5_gz=WRONG))
    assert len(load_dataset("tiny", data_dir=folder, offline=True)[0]) == 120
    # a raw file cannot be checked against a .gz md5: with only .gz md5s known it is not checked
    register(monkeypatch, make_spec(tmp_path, md5_gz=WRONG))
    assert len(load_dataset("tiny", data_dir=folder, offline=True)[0]) == 120


def test_md5_rejects_other_files(tmp_path, monkeypatch):
    folder = make_idx_files(tmp_path / "d")
    md5s = raw_md5s(folder)
    other = make_idx_files(tmp_path / "other", seed=1)  # valid IDX files, other images
    os.replace(other / "t10k-images-idx3-ubyte.gz", folder / "t10k-images-idx3-ubyte.gz")
    register(monkeypatch, make_spec(tmp_path, md5_raw=md5s, md5_gz=WRONG))
    with pytest.raises(ChecksumError) as err:
        load_dataset("tiny", data_dir=folder, offline=True)
    message = str(err.value)
    path = folder / "t10k-images-idx3-ubyte.gz"
    assert message.startswith(f"{path}: checksum mismatch")
    assert md5s["t10k-images-idx3-ubyte"] in message and "0" * 32 in message
    assert "delete or replace it" in message
    # and without the check the file loads
    assert len(load_dataset("tiny", data_dir=folder, offline=True, verify_md5=False)[1]) == 60


def test_fashion_mnist_spec_has_the_published_md5s():
    assert FASHION_MNIST.md5_gz["train-images-idx3-ubyte"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert FASHION_MNIST.md5_raw["t10k-labels-idx1-ubyte"] == "15d484375f8d13e6eb1aabb0c3f46965"
    assert set(SPECS["mnist"].md5_gz) == set(NAMES) and not SPECS["mnist"].md5_raw
    assert len(FASHION_MNIST.class_names) == 10 and FASHION_MNIST.class_names[9] == "ankle boot"


def test_spec_validation():
    with pytest.raises(ValueError, match="md5s given for files it does not have"):
        dataclasses.replace(FASHION_MNIST, md5_raw={"nope": "0" * 32})
    with pytest.raises(ValueError, match="must name exactly the roles"):
        dataclasses.replace(FASHION_MNIST, files={"train_images": "x"})


# --------------------------------------------------------------------------- lookup order


def test_lookup_order(tmp_path, places, serve):
    mirror = serve({})
    spec = make_spec(tmp_path, mirrors=(mirror.url,))
    for n, folder in enumerate(places.values()):
        make_idx_files(folder, n_train=10 + n)
    for where, folder in places.items():
        found = locate(spec)
        assert set(found) == set(ROLES)
        assert all(p.parent == folder for p in found.values()), where
        for p in folder.iterdir():
            p.unlink()
    assert mirror.requests == []


def test_lookup_takes_uncompressed_files_and_prefers_gz(tmp_path, places):
    spec = make_spec(tmp_path)
    make_idx_files(places["./data"], gz=False)
    found = locate(spec, offline=True)
    assert found["train_images"] == places["./data"] / "train-images-idx3-ubyte"
    make_idx_files(places["./data"], gz=True)
    assert locate(spec, offline=True)["train_images"].name == "train-images-idx3-ubyte.gz"


def test_not_found_message_names_every_place_and_how_to_get_the_data(tmp_path, places):
    spec = make_spec(tmp_path)
    make_idx_files(tmp_path / "partial", n_train=10)
    places["system"].mkdir()
    places["cache"].mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        os.replace(tmp_path / "partial" / name, places["cache"] / name)
    with pytest.raises(DataNotFoundError) as err:
        locate(spec, offline=True)
    message = str(err.value)
    for folder in places.values():
        assert str(folder) in message
    assert (f"{places['cache']} (2 of the 4 files; missing t10k-images-idx3-ubyte, "
            "t10k-labels-idx1-ubyte)") in message
    assert f"{places['system']} (none of the files)" in message
    assert f"{places['./data']} (no such folder)" in message
    assert "Downloading is off" in message
    assert "sudo apt-get install dataset-tiny" in message
    assert "--data-dir DIR" in message and "SOFTMAXLAB_DATA" in message
    assert "http://127.0.0.1:9/" in message and "--mirror URL" not in message


def test_relative_xdg_cache_home_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "softmaxlab" / "tiny"
    assert sources.cache_dir(make_spec(tmp_path)) == expected


def test_a_partial_cache_does_not_hide_a_complete_folder(tmp_path, places, serve):
    mirror = serve({})
    spec = make_spec(tmp_path, mirrors=(mirror.url,))
    make_idx_files(places["cache"])
    (places["cache"] / "t10k-images-idx3-ubyte.gz").unlink()
    make_idx_files(places["../data"])
    assert locate(spec)["train_images"].parent == places["../data"]
    assert mirror.requests == []


def test_an_interrupted_download_is_completed_into_the_cache(tmp_path, places, serve):
    source = make_idx_files(tmp_path / "source")
    mirror = serve(routes_for(source))
    spec = make_spec(tmp_path, mirrors=(mirror.url,), md5_raw=raw_md5s(source))
    places["cache"].mkdir(parents=True)
    for name in NAMES[:2]:
        (places["cache"] / f"{name}.gz").write_bytes((source / f"{name}.gz").read_bytes())
    found = locate(spec)
    assert all(p.parent == places["cache"] for p in found.values())
    assert sorted(mirror.requests) == sorted(f"/{n}.gz" for n in NAMES[2:])
    assert leftovers(places["cache"]) == []


def test_data_dir_is_the_only_folder_used(tmp_path, places, serve):
    mirror = serve({})
    spec = make_spec(tmp_path, mirrors=(mirror.url,))
    make_idx_files(places["cache"])
    mine = make_idx_files(tmp_path / "mine", n_train=10)
    assert all(p.parent == mine for p in locate(spec, data_dir=mine).values())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as err:
        locate(spec, data_dir=empty, offline=True)
    message = str(err.value)
    assert f"{empty} (given by --data-dir; none of the files)" in message
    assert str(places["cache"]) not in message.split("To get the data")[0]
    assert mirror.requests == []


def test_data_dir_missing_files_are_downloaded_into_it(tmp_path, places, serve):
    source = make_idx_files(tmp_path / "source")
    mirror = serve(routes_for(source))
    spec = make_spec(tmp_path, mirrors=(mirror.url,), md5_raw=raw_md5s(source))
    mine = tmp_path / "mine" / "new"
    found = locate(spec, data_dir=mine)
    assert all(p.parent == mine for p in found.values())
    assert not places["cache"].exists()
    assert leftovers(mine) == []


def test_softmaxlab_data_env_and_data_dir_beats_it(tmp_path, places, monkeypatch):
    spec = make_spec(tmp_path)
    env_dir = make_idx_files(tmp_path / "env")
    arg_dir = make_idx_files(tmp_path / "arg")
    make_idx_files(places["cache"])
    monkeypatch.setenv("SOFTMAXLAB_DATA", str(env_dir))
    assert locate(spec, offline=True)["test_labels"].parent == env_dir
    assert locate(spec, data_dir=arg_dir, offline=True)["test_labels"].parent == arg_dir
    monkeypatch.setenv("SOFTMAXLAB_DATA", str(tmp_path / "nothing"))
    with pytest.raises(DataNotFoundError, match=r"given by \$SOFTMAXLAB_DATA; no such folder"):
        locate(spec, offline=True)


def test_softmaxlab_data_expands_the_home_folder(tmp_path, places, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    make_idx_files(tmp_path / "home" / "fm")
    monkeypatch.setenv("SOFTMAXLAB_DATA", "~/fm")
    found = locate(make_spec(tmp_path), offline=True)
    assert found["train_images"].parent == tmp_path / "home" / "fm"


def test_offline_makes_no_request(tmp_path, places, serve, monkeypatch):
    source = make_idx_files(tmp_path / "source")
    mirror = serve(routes_for(source))
    spec = make_spec(tmp_path, mirrors=(mirror.url,), md5_raw=raw_md5s(source))
    with pytest.raises(DataNotFoundError, match="Downloading is off"):
        locate(spec, offline=True)
    monkeypatch.setenv("SOFTMAXLAB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="Downloading is off"):
        locate(spec)
    assert mirror.requests == []
    assert not places["cache"].exists()
    monkeypatch.setenv("SOFTMAXLAB_OFFLINE", "0")
    assert locate(spec)["train_images"].parent == places["cache"]
    monkeypatch.setenv("SOFTMAXLAB_OFFLINE", "maybe")
    with pytest.raises(ValueError, match=r"\$SOFTMAXLAB_OFFLINE='maybe' is not understood"):
        locate(spec)


def test_real_spec_finds_the_system_folder(real_data_dir, places):
    found = locate(FASHION_MNIST, offline=True)
    assert found["train_images"] == real_data_dir / "train-images-idx3-ubyte.gz"
