"""Fuzzing the IDX reader: whatever the bytes, parse_idx / read_bytes / read_idx give a valid array
that matches its header, or an IDXError; never any other exception, never more inflated data than
the header declares.

Deterministic (``derandomize``, no example database) and bounded: the file runs in a few seconds.
"""

from __future__ import annotations

import gzip
import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmaxlab.data import IDXError, write_idx
from softmaxlab.data.idx import _CODES, _MAX_HEADER, DTYPES, parse_idx, read_bytes, read_idx
from softmaxlab.errors import SoftmaxlabError


def fuzz(max_examples: int):
    """Hypothesis settings for this file: reproducible, no database, bounded."""
    return settings(derandomize=True, deadline=None, database=None, max_examples=max_examples,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One folder for the module (hypothesis refuses function-scoped fixtures like tmp_path)."""
    return tmp_path_factory.mktemp("fuzz_idx")


def _declared(content: bytes | bytearray) -> int | None:
    """The file size (header and payload) the IDX header of ``content`` declares, if it has one."""
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in DTYPES or not content[3]:
        return None
    nd = content[3]
    if len(content) < 4 + 4 * nd:
        return None
    shape = struct.unpack(f">{nd}I", content[4 : 4 + 4 * nd])
    return 4 + 4 * nd + int(np.prod(shape, dtype=object)) * DTYPES[content[2]].itemsize


def check_array(arr: np.ndarray, content: bytes | bytearray) -> None:
    """``arr``, parsed from ``content``, is exactly what the header says, and holds the rest."""
    code, nd = content[2], content[3]
    assert content[:2] == b"\0\0"
    assert arr.shape == struct.unpack(f">{nd}I", content[4 : 4 + 4 * nd])
    assert arr.dtype == DTYPES[code].newbyteorder("=")
    assert 4 + 4 * nd + arr.nbytes == len(content)
    np.testing.assert_array_equal(arr.ravel(), np.frombuffer(content, DTYPES[code], offset=4 + 4 * nd))


def check_bytes(data: bytes) -> np.ndarray | None:
    """parse_idx(data): a valid array (checked, returned) or an IDXError (None)."""
    try:
        arr = parse_idx(data, "fuzz")
    except IDXError as e:
        assert isinstance(e, SoftmaxlabError) and str(e).startswith("fuzz: ")
        return None
    check_array(arr, data)
    return arr


def check_file(path: Path) -> np.ndarray | None:
    """read_bytes and read_idx on ``path``: a valid array (returned) or an IDXError (None).

    Inflation of a gzipped file never goes past its header's declared size, or past the longest
    header when the content does not start with a valid one.
    """
    try:
        arr = read_idx(path)
    except IDXError as e:
        assert str(e).startswith(f"{path}: ")
        arr = None
    try:
        content = read_bytes(path)
    except IDXError:
        assert arr is None
        return None
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        declared = _declared(content)
        assert len(content) <= (declared if declared is not None else _MAX_HEADER + 1)
    else:
        assert content == raw
    if arr is not None:
        check_array(arr, content)
    return arr


def write(folder: Path, data: bytes) -> Path:
    path = folder / "fuzz.bin"
    path.write_bytes(data)
    return path


# valid files to truncate and mutate: small, of different dtypes and ranks
VALID = {
    "uint8 (3, 4, 5)": np.arange(60, dtype=np.uint8).reshape(3, 4, 5),
    "int16 (7,)": np.arange(-3, 4, dtype=np.int16) * 1000,
    "float64 (2, 3)": np.linspace(-1, 1, 6).reshape(2, 3),
    "int32 (1, 2, 1, 2)": np.arange(4, dtype=np.int32).reshape(1, 2, 1, 2),
}


def _valid_bytes(name: str, gz: bool) -> bytes:
    """The IDX file of ``VALID[name]``, gzipped or not (built by hand, as write_idx writes it)."""
    arr = VALID[name]
    code = _CODES[arr.dtype.newbyteorder("=")]
    raw = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw += arr.astype(DTYPES[code]).tobytes()
    return gzip.compress(raw, mtime=0) if gz else raw


def test_valid_bytes_match_write_idx(tmp_path):
    """The seeds the fuzzers start from are the files write_idx makes."""
    for name, arr in VALID.items():
        for gz in (False, True):
            path = write_idx(tmp_path / ("a.gz" if gz else "a"), arr, compress=gz)
            assert path.read_bytes() == _valid_bytes(name, gz)
            np.testing.assert_array_equal(check_file(path), arr)


# --------------------------------------------------------------------------- random bytes


@fuzz(500)
@given(data=st.binary(max_size=200))
def test_random_bytes(folder, data):
    check_bytes(data)
    check_file(write(folder, data))


@fuzz(300)
@given(data=st.binary(max_size=200))
def test_random_bytes_behind_the_magic(folder, data):
    """Random bytes after an IDX magic number (uint8, 1 to 3 dims) or after the gzip magic."""
    check_bytes(b"\0\0\x08" + bytes([1 + len(data) % 3]) + data)
    check_file(write(folder, b"\x1f\x8b" + data))


@fuzz(300)
@given(data=st.binary(max_size=300))
def test_random_bytes_gzipped(folder, data):
    check_file(write(folder, gzip.compress(data, mtime=0)))


# --------------------------------------------------------------------------- truncations


@pytest.mark.parametrize("name", list(VALID))
@pytest.mark.parametrize("gz", [False, True])
def test_every_truncation_is_an_idx_error(folder, name, gz):
    """Cut at every position (exhaustive, no sampling): an IDXError, except the whole file."""
    full = _valid_bytes(name, gz)
    for cut in range(len(full)):
        assert check_file(write(folder, full[:cut])) is None, cut
        if not gz:
            assert check_bytes(full[:cut]) is None, cut
    np.testing.assert_array_equal(check_file(write(folder, full)), VALID[name])


# --------------------------------------------------------------------------- mutated headers

# sizes near the edges: 0, 1, the real one's neighbours, and the uint32 extremes
SIZES = st.one_of(st.integers(0, 8), st.sampled_from([2**16, 2**31 - 1, 2**31, 2**32 - 1]),
                  st.integers(0, 2**32 - 1))


@fuzz(1000)
@given(
    magic=st.one_of(st.just(b"\0\0"), st.binary(min_size=2, max_size=2)),
    code=st.one_of(st.sampled_from(sorted(DTYPES)), st.integers(0, 255)),
    dims=st.one_of(st.lists(SIZES, min_size=0, max_size=4), st.lists(st.integers(0, 2), max_size=80)),
    ndim_delta=st.sampled_from([0, 0, 0, -1, 1, 100]),
    payload=st.one_of(st.none(), st.binary(max_size=64)),
    gz=st.booleans(),
)
def test_mutated_headers(folder, magic, code, dims, ndim_delta, payload, gz):
    """Any magic, dtype code, ndim (matching the sizes or not) and sizes; a payload of the
    declared size when it is small (``payload`` None), else random bytes."""
    nd = (len(dims) + ndim_delta) % 256
    head = magic + bytes([code, nd]) + struct.pack(f">{len(dims)}I", *dims)
    if payload is None:
        itemsize = DTYPES[code].itemsize if code in DTYPES else 1
        size = int(np.prod(dims, dtype=object)) * itemsize if dims else 0
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256) if size <= 4096 else b""
    data = head + payload
    arr = check_bytes(data)
    assert (check_file(write(folder, gzip.compress(data, mtime=0) if gz else data)) is None) == (
        arr is None)


def test_mutated_headers_reach_every_outcome(folder):
    """The header fuzzer's special cases: each gives the error parse_idx promises."""
    cases = {
        "numpy cannot hold": b"\0\0\x08\x41" + struct.pack(">65I", *[1] * 65) + b"x",  # > 64 dims
        "numpy cannot hold the header's shape": (  # empty, but the other sizes overflow
            b"\0\0\x08\x04" + struct.pack(">4I", 0, *[2**32 - 1] * 3)),
    }
    for problem, data in cases.items():
        with pytest.raises(IDXError, match=problem):
            parse_idx(data)
        assert check_file(write(folder, gzip.compress(data))) is None
    # 0 sizes with nothing after the header are valid empty arrays
    assert check_bytes(b"\0\0\x0d\x02" + struct.pack(">2I", 0, 5)).shape == (0, 5)


# --------------------------------------------------------------------------- bit flips


@fuzz(1000)
@given(name=st.sampled_from(list(VALID)), gz=st.booleans(), data=st.data())
def test_bit_flips(folder, name, gz, data):
    """1 to 3 flipped bits anywhere: in the header, the payload or the gzip stream."""
    content = bytearray(_valid_bytes(name, gz))
    positions = st.integers(0, len(content) - 1)
    for pos, bit in data.draw(st.lists(st.tuples(positions, st.integers(0, 7)), min_size=1,
                                       max_size=3)):
        content[pos] ^= 1 << bit
    arr = check_file(write(folder, bytes(content)))
    if not gz:
        assert (arr is None) == (check_bytes(bytes(content)) is None)


@fuzz(300)
@given(name=st.sampled_from(list(VALID)), data=st.data())
def test_gzip_members_padding_and_garbage(folder, name, data):
    """The raw content split into gzip members, then zero padding or other trailing bytes."""
    raw = _valid_bytes(name, gz=False)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=3)))
    bounds = [0, *cuts, len(raw)]
    stream = b"".join(gzip.compress(raw[a:b], mtime=0) for a, b in itertools.pairwise(bounds))
    tail = data.draw(st.one_of(st.binary(max_size=8).map(lambda b: bytes(len(b))),
                               st.binary(max_size=40)))
    arr = check_file(write(folder, stream + tail))
    if not tail.strip(b"\0"):
        np.testing.assert_array_equal(arr, VALID[name])  # members and padding read whole
