"""Tests for softmaxlab.data.idx: reading and writing the IDX format (plain or gzipped)."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from softmaxlab.data import IDXError, read_idx, write_idx
from softmaxlab.data.idx import parse_idx, read_bytes


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
    """An IDX header: the magic number with dtype ``code``, then the sizes ``dims``."""
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


# a gzipped file is inflated no further than its header declares, so it cannot count the excess
GZ_PROBLEM = {"trailing bytes": "holds more data than its header declares.*18 bytes with the header"}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("gz", [False, True])
def test_broken_headers_name_the_file_and_the_problem(tmp_path, case, gz):
    data, problem = BROKEN[case]
    if gz:
        problem = GZ_PROBLEM.get(case, problem)
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


def _bomb(dims: tuple[int, ...], blocks: int) -> bytes:
    """A gzip stream: an IDX header of ``dims`` (uint8), then ``blocks`` x 16 MiB of zeros.

    Deflate's output for 16 MiB of zeros after a full flush does not depend on what came before,
    so it is compressed once and repeated (16 KB each): a 1 GiB bomb costs no 1 GiB to make. Its
    trailer's checksum is wrong, but inflation must stop long before reaching it.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = deflate.compress(_header(dims=dims)) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(bytes(16 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    return head + block * blocks + deflate.flush()


def _peak_of(call) -> tuple[int, float]:
    """Peak bytes traced while ``call()`` runs (it must raise IDXError) and seconds it took."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(IDXError) as err:
            call()
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, seconds, str(err.value)


@pytest.mark.parametrize("dims", [(10, 28, 28), (20 * 1024, 1024)])
def test_gzip_bomb_stops_at_the_declared_size(tmp_path, dims):
    """1 MB of gzip inflating to 1 GiB, declaring 7.8 KB or 20 MiB: an error, without the GiB."""
    path = tmp_path / "bomb.gz"
    path.write_bytes(_bomb(dims, blocks=64))
    assert path.stat().st_size < 2 << 20
    peak, seconds, message = _peak_of(lambda: read_idx(path))
    assert f"{path}: the file holds more data than its header declares" in message
    assert "a gzip bomb" in message
    # the declared size, one 1 MiB compressed chunk and zlib's state; never the 1 GiB
    declared = 8 + 4 * len(dims) + np.prod(dims)
    assert peak < 1.2 * declared + (8 << 20), f"peak {peak / 2**20:.1f} MiB"
    assert seconds < 5


def test_header_declaring_more_than_the_gzip_file_can_hold(tmp_path):
    """A 30-byte gzip file whose header declares 47 MB is refused before inflating further."""
    path = tmp_path / "implausible.gz"
    path.write_bytes(gzip.compress(_header(dims=(60000, 28, 28)) + bytes(5)))
    peak, _, message = _peak_of(lambda: read_idx(path))
    assert message.startswith(f"{path}: the header's shape (60000, 28, 28) of uint8 needs ")
    assert "more than a gzip file of" in message
    assert peak < 4 << 20


def test_content_that_is_not_idx_stops_inflation_early(tmp_path):
    """A gzipped file not starting with an IDX header is not inflated whole; parse_idx says why."""
    path = tmp_path / "text.gz"
    path.write_bytes(gzip.compress(b"not an IDX file " * 100_000))
    content = read_bytes(path)
    assert len(content) <= 1025
    with pytest.raises(IDXError, match="bad magic number 0x6e6f7420"):
        read_idx(path)


def test_valid_files_read_whole_at_the_declared_size(tmp_path):
    """Content of exactly the declared size passes, whether it inflates from many compressed
    chunks (random bytes) or from one chunk in many pieces (zeros)."""
    arr = np.random.default_rng(1).integers(0, 256, (12, 1000, 1000), dtype=np.uint8)  # 12 MB
    data = _header(dims=arr.shape) + arr.tobytes()
    path = tmp_path / "random.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1))
    content = read_bytes(path)
    assert content == data  # whole: sources.py hashes it
    np.testing.assert_array_equal(parse_idx(content), arr)
    zeros = tmp_path / "zeros.gz"  # 40 MB from 175 KB
    zeros.write_bytes(gzip.compress(_header(dims=(40, 1000, 1000)) + bytes(40_000_000), 1))
    assert read_idx(zeros).shape == (40, 1000, 1000)
