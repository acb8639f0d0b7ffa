"""Tests for softmaxlab.data.sources' downloads, against mirrors served on 127.0.0.1."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import pytest

from conftest import NAMES, leftovers, make_idx_files, make_spec, raw_md5s, routes_for
from softmaxlab.data import ChecksumError, DataNotFoundError, locate, sources

pytestmark = pytest.mark.usefixtures("isolated_data_env")


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fast_timeouts(monkeypatch):
    """Connect and read timeouts of 0.5 s for this test."""
    monkeypatch.setattr(sources, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.setattr(sources, "READ_TIMEOUT", 0.5)


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
