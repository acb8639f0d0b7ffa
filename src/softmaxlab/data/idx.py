"""Read and write IDX files (the format of MNIST and Fashion-MNIST), raw or gzipped.

Header: two zero bytes, a dtype code, the number of dimensions ``nd``; then ``nd`` big-endian
uint32 sizes; then the payload, big-endian, in C order.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

# IDX dtype code -> numpy dtype (big-endian where it matters)
DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES = {v.newbyteorder("="): k for k, v in DTYPES.items()}


class IDXError(ValueError):
    """A file that is not a valid IDX file; the message names the file and what is wrong."""


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic (whatever its name)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as g:
                    return g.read()
            return f.read()
    except (EOFError, OSError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise IDXError(f"{path}: not a readable gzip file ({e}); delete it and get it again") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array, checking magic, dtype, dimensions and payload length."""
    if len(data) < 4:
        raise IDXError(f"{name}: {len(data)} bytes is too short for an IDX header")
    zero, code, nd = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise IDXError(f"{name}: bad magic number 0x{data[:4].hex()} (an IDX file starts with 00 00)")
    if code not in DTYPES:
        raise IDXError(f"{name}: unknown IDX dtype code 0x{code:02x}")
    if nd == 0:
        raise IDXError(f"{name}: IDX header says 0 dimensions")
    header = 4 + 4 * nd
    if len(data) < header:
        raise IDXError(f"{name}: truncated header ({len(data)} bytes, need {header} for {nd} dims)")
    shape = struct.unpack(f">{nd}I", data[4:header])
    dtype = DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise IDXError(
            f"{name}: payload {what}: header shape {shape} needs {expected} bytes, found {got}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a numpy array; ``ndim`` checks the number of dimensions."""
    arr = parse_idx(read_bytes(path), str(path))
    if ndim is not None and arr.ndim != ndim:
        raise IDXError(f"{path}: expected {ndim} dimensions, the header says {arr.ndim} {arr.shape}")
    return arr


def write_idx(path: str | os.PathLike, arr: np.ndarray, compress: bool | None = None) -> None:
    """Write ``arr`` as an IDX file; gzip it when ``compress`` (default: the name ends in .gz)."""
    arr = np.ascontiguousarray(arr)
    code = CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"dtype {arr.dtype} has no IDX code; use one of {sorted(map(str, CODES))}")
    data = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data += arr.astype(DTYPES[code], copy=False).tobytes()
    if compress is None:
        compress = str(path).endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    Path(path).write_bytes(data)
