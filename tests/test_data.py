"""Tests for softmaxlab.data: the IDX reader, checksums, lookup, downloads and batches."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import accept_files, make_idx_files, raw_md5s
from softmaxlab.data import (
    SPECS,
    BatchLoader,
    ChecksumError,
    DataNotFoundError,
    IDXError,
    ImageDataset,
    epoch_permutation,
    load_dataset,
    locate,
    read_idx,
    sources,
    text_labels,
    write_idx,
)
from softmaxlab.data.idx import parse_idx
from softmaxlab.data.specs import FASHION_MNIST, ROLES, DatasetSpec

pytestmark = pytest.mark.usefixtures("isolated_data_env")

NAMES = [FASHION_MNIST.files[r] for r in ROLES]


# --------------------------------------------------------------------------- helpers


def make_spec(tmp_path: Path, **changes) -> DatasetSpec:
    """A dataset spec whose usual folders all live under ``tmp_path``."""
    spec = dataclasses.replace(
        FASHION_MNIST, name="tiny", md5_gz={}, md5_raw={}, mirrors=("http://127.0.0.1:9/",),
        system_dirs=(str(tmp_path / "system"),), system_package="dataset-tiny",
        torchvision_name="Tiny",
    )
    return dataclasses.replace(spec, **changes)




def register(monkeypatch: pytest.MonkeyPatch, spec: DatasetSpec) -> DatasetSpec:
    monkeypatch.setitem(SPECS, spec.name, spec)
    return spec


def leftovers(folder: Path) -> list[str]:
    """Everything in ``folder`` that is not one of the four dataset files."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.removesuffix(".gz") not in NAMES)


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mirror:
    """A local HTTP server; ``routes`` maps a path to what it answers; it counts requests.

    An answer is bytes (200 with that body), an int (that HTTP error), ``("stall", body)`` (no
    answer until the test ends), ``("stall_body", body)`` (headers and half the body, then
    silence) or ``("short", body)`` (a Content-Length of the whole body, half of it, then close).
    """

    def __init__(self, routes: dict[str, object]) -> None:
        self.routes = routes
        self.requests: list[str] = []
        self.release = threading.Event()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                answer = mirror.routes.get(self.path, 404)
                if isinstance(answer, int):
                    self.send_error(answer)
                    return
                kind, body = answer if isinstance(answer, tuple) else ("ok", answer)
                if kind == "stall":
                    mirror.release.wait(10)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "ok":
                    self.wfile.write(body)
                    return
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if kind == "stall_body":
                    mirror.release.wait(10)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    """``serve(routes)`` starts a Mirror on 127.0.0.1; all are stopped at the end of the test."""
    mirrors: list[Mirror] = []

    def start(routes: dict[str, object]) -> Mirror:
        mirrors.append(Mirror(routes))
        return mirrors[-1]

    yield start
    for m in mirrors:
        m.close()


def routes_for(folder: Path, prefix: str = "/", names=NAMES) -> dict[str, object]:
    """Routes serving ``folder``'s .gz files as ``<prefix><name>.gz``."""
    return {f"{prefix}{n}.gz": (folder / f"{n}.gz").read_bytes() for n in names}


@pytest.fixture
def fast_timeouts(monkeypatch):
    monkeypatch.setattr(sources, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.setattr(sources, "READ_TIMEOUT", 0.5)


# --------------------------------------------------------------------------- IDX format


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", ">i2", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    for shape in [(7,), (3, 4, 5), (2, 1, 3, 2)]:
        arr = (rng.standard_normal(shape) * 100).astype(dtype)
        path = write_idx(tmp_path / f"a{len(shape)}{suffix}", arr)
        back = read_idx(path)
        assert back.dtype == np.dtype(dtype).newbyteorder("=")
        np.testing.assert_array_equal(back, arr)
        assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_idx_header_is_big_endian_with_the_documented_codes(tmp_path):
    path = write_idx(tmp_path / "x", np.arange(6, dtype=np.int16).reshape(2, 3))
    data = path.read_bytes()
    assert data[:4] == b"\x00\x00\x0b\x02"
    assert struct.unpack(">2I", data[4:12]) == (2, 3)
    assert struct.unpack(">6h", data[12:]) == (0, 1, 2, 3, 4, 5)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw_named_gz = write_idx(tmp_path / "raw.gz", arr, compress=False)
    gz_named_raw = write_idx(tmp_path / "gzipped", arr, compress=True)
    np.testing.assert_array_equal(read_idx(raw_named_gz), arr)
    np.testing.assert_array_equal(read_idx(gz_named_raw), arr)


def test_write_idx_rejects_what_idx_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="no IDX code"):
        write_idx(tmp_path / "b", np.zeros(3, dtype=bool))
    with pytest.raises(ValueError, match="does not fit an IDX header"):
        write_idx(tmp_path / "s", np.array(5, dtype=np.uint8))
    assert not list(tmp_path.iterdir())


def _header(code: int = 0x08, dims: tuple[int, ...] = (2, 3)) -> bytes:
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


BROKEN = {
    "empty": (b"", "too short for an IDX header"),
    "short magic": (b"\x00\x00\x08", "too short for an IDX header"),
    "bad magic": (b"\x01\x02\x08\x02" + bytes(14), "bad magic number 0x01020802"),
    "unknown dtype": (b"\x00\x00\x0a\x01" + struct.pack(">I", 2) + bytes(2),
                      "unknown IDX dtype code 0x0a"),
    "0 dims": (b"\x00\x00\x08\x00" + bytes(4), "0 dimensions"),
    "truncated header": (b"\x00\x00\x08\x03" + struct.pack(">2I", 2, 3), "truncated header"),
    "truncated payload": (_header() + bytes(5), "payload truncated.*needs 6 bytes, the file has 5"),
    "trailing bytes": (_header() + bytes(7), "trailing bytes.*needs 6 bytes, the file has 7"),
    "truncated int32 payload": (_header(0x0C, (2,)) + bytes(7), "payload truncated"),
}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("gz", [False, True])
def test_broken_headers_name_the_file_and_the_problem(tmp_path, case, gz):
    data, problem = BROKEN[case]
    path = tmp_path / ("broken.gz" if gz else "broken")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(IDXError, match=problem) as err:
        read_idx(path)
    assert str(err.value).startswith(f"{path}: ")


def test_huge_header_sizes_do_not_overflow():
    data = b"\x00\x00\x0e\x04" + struct.pack(">4I", *[2**32 - 1] * 4)
    with pytest.raises(IDXError, match="payload truncated"):
        parse_idx(data, "huge")


def test_read_idx_checks_ndim_and_dtype(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((2, 3, 4), dtype=np.uint8))
    with pytest.raises(IDXError, match=r"expected 1 dimensions, the header says 3 \(2, 3, 4\)"):
        read_idx(path, ndim=1)
    with pytest.raises(IDXError, match="expected int16 data, the header says uint8"):
        read_idx(path, dtype="int16")
    assert read_idx(path, ndim=3, dtype="uint8").shape == (2, 3, 4)


def test_corrupt_and_truncated_gzip(tmp_path):
    good = gzip.compress(_header(dims=(1000,)) + bytes(range(256)) * 3 + bytes(232))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    for name, data in [("flipped.gz", bytes(flipped)), ("cut.gz", good[: len(good) // 2]),
                       ("crc.gz", good[:-8] + bytes(8))]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(IDXError, match="broken gzip data") as err:
            read_idx(path)
        assert str(path) in str(err.value)


def test_gzip_members_padding_and_large_files_inflate_whole(tmp_path):
    """Several gzip members (as `cat a.gz b.gz` makes), zero padding after the last one, and a
    payload larger than a read chunk: all inflated into one writable buffer."""
    arr = np.random.default_rng(0).integers(0, 256, (3000, 28, 28), dtype=np.uint8)  # 2.4 MB
    data = _header(dims=arr.shape) + arr.tobytes()
    cut = len(data) // 3
    members = gzip.compress(data[:cut]) + gzip.compress(data[cut:])
    for name, content in [("members.gz", members), ("padded.gz", gzip.compress(data) + bytes(9))]:
        path = tmp_path / name
        path.write_bytes(content)
        got = read_idx(path)
        np.testing.assert_array_equal(got, arr)
        assert got.flags.writeable  # no copy is needed to hand it to torch


def test_missing_file_is_an_os_error_not_an_idx_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


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


# --------------------------------------------------------------------------- md5 checks


def _gz_md5s(folder: Path) -> dict[str, str]:
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


@pytest.fixture
def places(tmp_path, monkeypatch, isolated_data_env):
    """The four usual folders of ``test_spec`` (cache, system, ./data, ../data), cwd inside."""
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return {
        "cache": isolated_data_env / "softmaxlab" / "tiny",
        "system": tmp_path / "system",
        "./data": cwd / "data" / "Tiny" / "raw",
        "../data": tmp_path / "work" / "data" / "Tiny" / "raw",
    }


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


# --------------------------------------------------------------------------- downloads


def test_mirrors_are_tried_in_order(tmp_path, places, serve):
    source = make_idx_files(tmp_path / "source")
    missing = serve({})  # 404 for everything
    good = serve(routes_for(source, "/fm/"))
    refused = f"http://127.0.0.1:{free_port()}/"
    spec = make_spec(tmp_path, mirrors=(missing.url, refused, good.url + "fm"),
                     md5_raw=raw_md5s(source))
    found = locate(spec)
    for role, path in found.items():
        assert path.parent == places["cache"]
        name = spec.files[role]
        assert path.read_bytes() == (source / f"{name}.gz").read_bytes()
    # the mirror that worked is tried first for the next files
    assert missing.requests == ["/train-images-idx3-ubyte.gz"]
    assert len(good.requests) == 4
    assert leftovers(places["cache"]) == []


def test_an_https_failure_is_one_more_failed_mirror(tmp_path, places, serve):
    plain = serve({})  # speaks HTTP, so the TLS handshake fails
    spec = make_spec(tmp_path, mirrors=(f"https://127.0.0.1:{plain.server.server_port}/",))
    message = _failed_download(spec, places)
    assert "train-images-idx3-ubyte.gz: [SSL" in message


def test_mirror_option_and_env_replace_the_spec_mirrors(tmp_path, places, serve, monkeypatch):
    source = make_idx_files(tmp_path / "source")
    mirror = serve(routes_for(source))
    spec = make_spec(tmp_path, md5_raw=raw_md5s(source))  # its own mirror is a dead port
    monkeypatch.setenv("SOFTMAXLAB_MIRROR", "http://127.0.0.1:9/")
    locate(spec, mirror=mirror.url, data_dir=tmp_path / "a")
    assert len(mirror.requests) == 4
    monkeypatch.setenv("SOFTMAXLAB_MIRROR", mirror.url)
    locate(spec, data_dir=tmp_path / "b")
    assert len(mirror.requests) == 8
    with pytest.raises(ValueError, match="--mirror 'example.org/fm' is not a URL"):
        locate(spec, mirror="example.org/fm", data_dir=tmp_path / "c")


def test_a_local_folder_works_as_a_file_url_mirror(tmp_path, places):
    source = make_idx_files(tmp_path / "source")
    spec = make_spec(tmp_path, md5_raw=raw_md5s(source))
    found = locate(spec, mirror=source.as_uri())
    assert all(p.parent == places["cache"] for p in found.values())


def _failed_download(spec, places) -> str:
    """The DataNotFoundError message of a download that must fail and leave the cache empty."""
    with pytest.raises(DataNotFoundError) as err:
        locate(spec)
    assert not places["cache"].exists() or list(places["cache"].iterdir()) == []
    return str(err.value)


def test_wrong_bytes_are_rejected_and_nothing_is_kept(tmp_path, places, serve):
    source = make_idx_files(tmp_path / "source")
    impostor = make_idx_files(tmp_path / "impostor", seed=7)
    mirror = serve(routes_for(impostor))
    spec = make_spec(tmp_path, mirrors=(mirror.url,), md5_raw=raw_md5s(source))
    message = _failed_download(spec, places)
    assert f"{mirror.url}train-images-idx3-ubyte.gz: checksum mismatch" in message
    assert f"Downloading the missing files into {places['cache']} failed" in message
    assert mirror.requests == ["/train-images-idx3-ubyte.gz"]  # no point trying the others


@pytest.mark.parametrize("body, problem", [
    (b"<html><body>Access denied</body></html>", "the downloaded file: bad magic number"),
    (gzip.compress(b"\x00\x00\x08\x01" + bytes(1000))[:-20],
     "the downloaded file: broken gzip data"),
])
def test_a_file_that_is_not_idx_is_rejected(tmp_path, places, serve, body, problem):
    source = make_idx_files(tmp_path / "source")
    mirror = serve({f"/{n}.gz": body for n in NAMES})
    spec = make_spec(tmp_path, mirrors=(mirror.url,), md5_raw=raw_md5s(source))
    message = _failed_download(spec, places)
    assert f"{mirror.url}train-images-idx3-ubyte.gz: {problem}" in message


def test_a_stalled_server_times_out(tmp_path, places, serve, fast_timeouts):
    source = make_idx_files(tmp_path / "source")
    name = "/train-images-idx3-ubyte.gz"
    silent = serve({name: ("stall", b"")})
    halfway = serve({name: ("stall_body", routes_for(source)[name])})
    spec = make_spec(tmp_path, mirrors=(silent.url, halfway.url), md5_raw=raw_md5s(source))
    message = _failed_download(spec, places)
    for m in (silent, halfway):
        assert f"{m.url}train-images-idx3-ubyte.gz: timed out" in message
    assert "read timeout 0.5 s" in message


def test_a_connection_closed_early_leaves_no_half_file(tmp_path, places, serve):
    source = make_idx_files(tmp_path / "source")
    name = "/train-images-idx3-ubyte.gz"
    body = routes_for(source)[name]
    mirror = serve({name: ("short", body)})
    spec = make_spec(tmp_path, mirrors=(mirror.url,), md5_raw=raw_md5s(source))
    message = _failed_download(spec, places)
    assert f"closed after {len(body) // 2} of {len(body)} bytes" in message


def test_an_unwritable_cache_is_reported(tmp_path, places, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(DataNotFoundError, match="cannot create the folder"):
        locate(make_spec(tmp_path))


def test_download_shows_progress_on_request(tmp_path, serve, capsys):
    source = make_idx_files(tmp_path / "source")
    mirror = serve(routes_for(source))
    dest = tmp_path / "out" / "x.gz"
    sources.download(mirror.url + "train-labels-idx1-ubyte.gz", dest, progress=True)
    assert dest.read_bytes() == (source / "train-labels-idx1-ubyte.gz").read_bytes()
    assert "x.gz" in capsys.readouterr().err
    sources.download(mirror.url + "train-labels-idx1-ubyte.gz", dest)
    assert capsys.readouterr().err == ""


def test_download_check_rejects_before_the_rename(tmp_path, serve):
    source = make_idx_files(tmp_path / "source")
    mirror = serve(routes_for(source))
    dest = tmp_path / "out" / "x.gz"

    def reject(path: Path) -> None:
        assert path.exists() and path != dest
        raise ChecksumError("no")

    with pytest.raises(ChecksumError):
        sources.download(mirror.url + "train-labels-idx1-ubyte.gz", dest, check=reject)
    assert list(dest.parent.iterdir()) == []


# --------------------------------------------------------------------------- batches


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> tuple[ImageDataset, ImageDataset]:
    folder = make_idx_files(tmp_path / "d")
    accept_files(monkeypatch, folder)
    return load_dataset(data_dir=folder, offline=True)


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
