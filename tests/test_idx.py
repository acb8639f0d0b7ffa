"""Tests for softmaxlab.data.idx: reading and writing the IDX format (plain or gzipped)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from softmaxlab.data import IDXError, read_idx, write_idx
from softmaxlab.data.idx import parse_idx


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
