"""Read and write IDX files (the format of MNIST and Fashion-MNIST), raw or gzipped.

Header: two zero bytes, a dtype code, the number of dimensions ``nd`` (1 byte each); then ``nd``
big-endian uint32 sizes; then the payload, big-endian, in C order, and nothing after it.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fsutil import atomic_path

# IDX dtype code -> numpy dtype (big-endian where it matters)
DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# numpy dtype in native byte order -> IDX code, for writing
_CODES = {dtype.newbyteorder("="): code for code, dtype in DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIM = 2**32 - 1  # a size must fit the header's uint32


class IDXError(DataError):
    """A file that is not a valid IDX file; the message names the file and what is wrong."""


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether the file starts with the gzip magic (its name does not matter)."""
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


_CHUNK = 1 << 20  # bytes read at a time


def read_bytes(path: str | os.PathLike, name: str | None = None) -> bytearray:
    """The file's content, gunzipped when it starts with the gzip magic (whatever its name).

    A bytearray, so arrays parsed from it are writable (no copy is needed to hand them to
    torch); a gzipped file is inflated chunk by chunk into it (no second full-size copy).
    ``name`` is what to call the file in error messages (default: its path).

    Raises:
        IDXError: the file is gzipped but its compressed data is broken or cut short.
        OSError: the file cannot be read (missing, no permission, ...).
    """
    with open(path, "rb") as f:
        if f.read(2) != _GZIP_MAGIC:
            f.seek(0)
            out = bytearray(os.fstat(f.fileno()).st_size)
            n = f.readinto(out)
            del out[n:]  # a file that shrank meanwhile
            return out
        f.seek(0)
        out = bytearray()
        inflate = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer around deflate
        try:
            while chunk := f.read(_CHUNK):
                while chunk:
                    out += inflate.decompress(chunk)
                    if not inflate.eof:
                        break
                    # the end of a member: what follows is another member (or padding zeros)
                    chunk = inflate.unused_data
                    if not chunk.strip(b"\0"):
                        break
                    inflate = zlib.decompressobj(wbits=31)
        except zlib.error as e:
            raise IDXError(f"{name or path}: broken gzip data ({e})") from None
        if not inflate.eof:
            raise IDXError(f"{name or path}: broken gzip data (the file ends before the end of "
                           "its compressed stream: it is cut short)")
        return out


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array (native byte order), checking the header against the payload.

    Args:
        data: the whole uncompressed file.
        name: what to call the data in error messages (the file's path).
    Returns:
        an array of the header's shape and dtype; read-only when it is uint8 (it views ``data``).
    Raises:
        IDXError: bad magic, unknown dtype, 0 dimensions, a truncated header, or a payload whose
            length is not what the header says.
    """
    if len(data) < 4:
        raise IDXError(f"{name}: {len(data)} bytes is too short for an IDX header (4 bytes or more)")
    zero, code, nd = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise IDXError(
            f"{name}: bad magic number 0x{data[:4].hex()}: an IDX file starts with two zero bytes"
        )
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in DTYPES)
        raise IDXError(f"{name}: unknown IDX dtype code 0x{code:02x} (known: {known})")
    if nd == 0:
        raise IDXError(f"{name}: the IDX header says 0 dimensions")
    header = 4 + 4 * nd
    if len(data) < header:
        raise IDXError(f"{name}: truncated header ({len(data)} bytes, {nd} dimensions need {header})")
    shape = struct.unpack(f">{nd}I", data[4:header])
    dtype = DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "followed by trailing bytes"
        raise IDXError(
            f"{name}: payload {what}: the header's shape {shape} of {dtype.name} needs "
            f"{expected} bytes, the file has {got}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx(
    path: str | os.PathLike, ndim: int | None = None, dtype: np.dtype | str | None = None
) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a numpy array.

    Args:
        path: the file; gzipped or not, whatever its name.
        ndim: if given, the number of dimensions the header must have.
        dtype: if given, the dtype the header must have (e.g. ``"uint8"``).
    Raises:
        IDXError: naming the file and what is wrong with it.
    """
    arr = parse_idx(read_bytes(path), str(path))
    if ndim is not None and arr.ndim != ndim:
        raise IDXError(f"{path}: expected {ndim} dimensions, the header says {arr.ndim} {arr.shape}")
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise IDXError(f"{path}: expected {np.dtype(dtype).name} data, the header says {arr.dtype}")
    return arr


def write_idx(path: str | os.PathLike, arr: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``arr`` as an IDX file atomically; gzip it when ``compress`` (default: name ends .gz).

    Raises:
        ValueError: the array's dtype has no IDX code, or its shape does not fit an IDX header.
    """
    arr = np.asarray(arr)
    code = _CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        allowed = ", ".join(d.name for d in _CODES)
        raise ValueError(f"dtype {arr.dtype} has no IDX code; convert the array to one of {allowed}")
    if not 1 <= arr.ndim <= 255 or any(n > _MAX_DIM for n in arr.shape):
        raise ValueError(
            f"shape {arr.shape} does not fit an IDX header (1 to 255 dimensions, each < 2**32)"
        )
    data = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data += arr.astype(DTYPES[code], copy=False).tobytes(order="C")
    if compress is None:
        compress = str(path).endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)
