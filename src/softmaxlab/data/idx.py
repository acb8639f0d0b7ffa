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
from typing import BinaryIO

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


_CHUNK = 1 << 20  # compressed bytes read at a time
_PIECE = 4 << 20  # most inflated bytes one decompress call returns (bounds the transient copy)
_MAX_HEADER = 4 + 4 * 255  # the longest IDX header: the magic number and 255 sizes
# Deflate inflates at most about 1032:1 (a 258-byte match coded in 2 bits); a little slack.
_MAX_RATIO = 1040


def read_bytes(path: str | os.PathLike, name: str | None = None) -> bytearray:
    """The file's content, gunzipped when it starts with the gzip magic (whatever its name).

    A bytearray, so arrays parsed from it are writable (no copy is needed to hand them to
    torch); a gzipped file is inflated chunk by chunk into it (no second full-size copy).
    ``name`` is what to call the file in error messages (default: its path).

    A gzipped file is inflated no further than its IDX header allows: once the header is in,
    the size it declares is the limit (a gzip bomb is an error, not an out-of-memory). When the
    content does not start with an IDX header, inflation stops early and the result is the
    prefix read so far; :func:`parse_idx` then says what is wrong with it.

    Raises:
        IDXError: the file is gzipped and its compressed data is broken or cut short, it
            inflates to more than its header declares, or the header declares more than a gzip
            file of its size can hold.
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
        return _inflate(f, name or str(path), os.fstat(f.fileno()).st_size)


def _inflate(f: BinaryIO, name: str, compressed: int) -> bytearray:
    """Inflate the gzip file ``f`` (``compressed`` bytes) up to the size its IDX header declares."""
    out = bytearray()
    limit = _MAX_HEADER  # until the header is in: enough for any header, no more
    declared = False
    inflate = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer around deflate
    data = b""  # compressed bytes not yet passed to zlib
    try:
        while True:
            if not data:
                data = f.read(_CHUNK)
                if not data:
                    break
            if inflate.eof:
                # the end of a member: what follows is zero padding or another member (as
                # `cat a.gz b.gz` makes), like gzip.decompress reads it
                data = data.lstrip(b"\0")
                if not data:
                    continue
                inflate = zlib.decompressobj(wbits=31)
            # max_length bounds the output of one call, so a small chunk cannot explode
            want = min(_PIECE, limit + 1 - len(out))
            piece = inflate.decompress(data, want)
            data = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
            out += piece
            if not declared and len(out) >= 4:
                try:
                    dtype, nd = _read_magic(out, name)
                except IDXError:
                    return out  # not an IDX file: parse_idx names the problem
                if len(out) >= 4 + 4 * nd:
                    limit = _declared_size(out, dtype, nd, name, compressed)
                    declared = True
            if len(out) > limit:
                # (only possible once the header is in: any header fits the first limit)
                shape = _shape(out, nd)
                raise IDXError(
                    f"{name}: the file holds more data than its header declares (shape {shape} "
                    f"of {dtype.name}: {limit} bytes with the header); a gzip bomb or a damaged "
                    "file"
                )
    except zlib.error as e:
        raise IDXError(f"{name}: broken gzip data ({e})") from None
    if not inflate.eof:
        raise IDXError(f"{name}: broken gzip data (the file ends before the end of "
                       "its compressed stream: it is cut short)")
    return out


def _declared_size(head: bytearray, dtype: np.dtype, nd: int, name: str, compressed: int) -> int:
    """The file size (header and payload) the header at the start of ``head`` declares.

    Raises:
        IDXError: more than a gzip file of ``compressed`` bytes can inflate to.
    """
    shape = _shape(head, nd)
    size = 4 + 4 * nd + math.prod(shape) * dtype.itemsize
    if size > _MAX_RATIO * compressed:
        raise IDXError(
            f"{name}: the header's shape {shape} of {dtype.name} needs {size} bytes, more than "
            f"a gzip file of {compressed} bytes can inflate to (deflate inflates at most about "
            "1032 times): the header is damaged"
        )
    return size


def _shape(data: bytes | bytearray, nd: int) -> tuple[int, ...]:
    """The ``nd`` sizes after the magic number."""
    return struct.unpack(f">{nd}I", data[4 : 4 + 4 * nd])


def _read_magic(data: bytes | bytearray, name: str) -> tuple[np.dtype, int]:
    """The dtype and number of dimensions the magic number (the first 4 bytes) gives.

    Raises:
        IDXError: fewer than 4 bytes, bad magic, unknown dtype, or 0 dimensions.
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
    return DTYPES[code], nd


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array (native byte order), checking the header against the payload.

    Args:
        data: the whole uncompressed file.
        name: what to call the data in error messages (the file's path).
    Returns:
        an array of the header's shape and dtype; read-only when it is uint8 (it views ``data``).
    Raises:
        IDXError: bad magic, unknown dtype, 0 dimensions, a truncated header, a payload whose
            length is not what the header says, or a shape numpy cannot hold.
    """
    dtype, nd = _read_magic(data, name)
    header = 4 + 4 * nd
    if len(data) < header:
        raise IDXError(f"{name}: truncated header ({len(data)} bytes, {nd} dimensions need {header})")
    shape = _shape(data, nd)
    expected = math.prod(shape) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "followed by trailing bytes"
        raise IDXError(
            f"{name}: payload {what}: the header's shape {shape} of {dtype.name} needs "
            f"{expected} bytes, the file has {got}"
        )
    try:
        arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    except ValueError as e:
        # more than numpy's 64 dimensions, or an empty shape whose other sizes overflow
        raise IDXError(f"{name}: numpy cannot hold the header's shape {shape} ({e})") from None
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
