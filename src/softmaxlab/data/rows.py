"""Reading a file without holding all of it: memory-mapped arrays and one process's rows.

- An uncompressed IDX file or a ``.npy`` array is **memory-mapped** (``map_idx``, ``map_npy``):
  the array's pages are read from the file when they are first touched and stay in the page
  cache, so loading takes no time and no memory of its own. Slicing rows off a mapped array is a
  view: a process that uses only its rows never reads the others.
- A **gzip** stream cannot be read in part: ``read_idx_rows`` inflates it from the start, keeps
  only the bytes of the rows asked for and throws the others away as it goes. Memory is that of
  the rows kept; time is that of inflating the file (up to the end, as the file's md5 needs).
- **Parquet** files are read by row group (``softmaxlab.data.formats.read_parquet``): only the
  groups that hold the rows asked for are read and decoded.

``part_of(n, rank, world_size)`` is the contiguous range of n rows that is a rank's share (shares
differ by at most one row); sharded training (``softmaxlab train --shard``) reads its training
rows with these functions.
"""

from __future__ import annotations

import hashlib
import math
import os
import zlib

import numpy as np

from .idx import _GZIP_MAGIC, IDXError, _read_magic, _shape

_CHUNK = 1 << 20  # bytes read (compressed) or inflated at a time
_MAX_HEADER = 4 + 4 * 255  # the longest IDX header


def part_of(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s share of ``n`` rows among ``world_size`` ranks."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return rank * n // world_size, (rank + 1) * n // world_size


def _header(head: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, header length) of the IDX header at the start of ``head``."""
    dtype, nd = _read_magic(head, name)
    length = 4 + 4 * nd
    if len(head) < length:
        raise IDXError(f"{name}: truncated header ({len(head)} bytes, {nd} dimensions need "
                       f"{length})")
    return dtype, _shape(head, nd), length


def idx_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape an IDX file's header (raw or gzipped) declares; reads only the header."""
    name = str(path)
    with open(path, "rb") as f:
        gz = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        if not gz:
            return _header(f.read(_MAX_HEADER), name)[1]
        head = b""
        for piece in _inflated(f, name, stop_after=_MAX_HEADER):
            head += piece
        return _header(head, name)[1]


def map_idx(path: str | os.PathLike) -> np.ndarray:
    """An uncompressed IDX file as a memory-mapped array of its header's shape (native order).

    Copy-on-write: the array is writable (torch takes it without a copy) and writes to it never
    reach the file. A multi-byte type in big-endian order (IDX's) is converted, which reads it:
    only labels are stored so, and they are small.

    Raises:
        IDXError: the file is gzipped, or its header or size is wrong (naming the file).
    """
    name = str(path)
    with open(path, "rb") as f:
        head = f.read(_MAX_HEADER)
        size = os.fstat(f.fileno()).st_size
    if head[:2] == _GZIP_MAGIC:
        raise IDXError(f"{name}: a gzipped file cannot be memory-mapped; gunzip it first")
    dtype, shape, length = _header(head, name)
    expected = math.prod(shape) * dtype.itemsize
    if size - length != expected:
        what = "truncated" if size - length < expected else "followed by trailing bytes"
        raise IDXError(f"{name}: payload {what}: the header's shape {shape} of {dtype.name} "
                       f"needs {expected} bytes, the file has {size - length}")
    if expected == 0:
        return np.zeros(shape, dtype.newbyteorder("="))
    arr = np.memmap(path, dtype=dtype, mode="c", offset=length, shape=shape)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def map_npy(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` file memory-mapped (copy-on-write); raises ValueError/OSError as np.load."""
    return np.load(path, mmap_mode="c", allow_pickle=False)


def read_idx_rows(path: str | os.PathLike, start: int, stop: int,
                  md5: bool = False) -> tuple[np.ndarray, int, str | None]:
    """Rows [start, stop) of an IDX file (raw or gzipped), read without holding the others.

    Returns (the rows, a native-order array; the file's number of rows; the md5 of the whole
    uncompressed content when ``md5``, else None). The whole content is read when ``md5`` is
    asked for or the file is gzipped and must be checked to its end; a raw file without ``md5``
    is read at the rows alone.

    Raises:
        IDXError: a bad header, a payload of the wrong size, broken gzip data; OSError.
    """
    name = str(path)
    hasher = hashlib.md5(usedforsecurity=False) if md5 else None
    with open(path, "rb") as f:
        gz = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        compressed = os.fstat(f.fileno()).st_size
        stream = _inflated(f, name) if gz else _raw(f)
        head = b""
        for piece in stream:
            head += piece
            if len(head) >= 4 and len(head) >= 4 + 4 * _read_magic(head, name)[1]:
                break
        dtype, shape, length = _header(head, name)
        row = math.prod(shape[1:]) * dtype.itemsize
        total = length + shape[0] * row
        if not 0 <= start <= stop <= shape[0]:
            raise ValueError(f"rows [{start}, {stop}) are not within the {shape[0]} rows of {name}")
        if gz and compressed * 1040 < total:  # deflate inflates at most ~1032:1
            raise IDXError(f"{name}: the header declares {total} bytes, more than a gzip file of "
                           f"{compressed} bytes can hold; a damaged file")
        lo, hi = length + start * row, length + stop * row
        out = bytearray(hi - lo)
        if not gz and hasher is None:  # a raw file: read the rows alone
            f.seek(lo)
            got = f.readinto(out)
            if got != len(out) or compressed != total:
                raise IDXError(f"{name}: payload of the wrong size: the header's shape {shape} "
                               f"of {dtype.name} needs {total - length} bytes, the file has "
                               f"{compressed - length}")
            arr = np.frombuffer(out, dtype).reshape(stop - start, *shape[1:])
            return arr.astype(dtype.newbyteorder("="), copy=False), shape[0], None
        pos = 0  # bytes of the content seen so far
        for piece in _chain(head, stream):
            if hasher is not None:
                hasher.update(piece)
            end = pos + len(piece)
            if end > total:
                raise IDXError(f"{name}: the file holds more data than its header declares "
                               f"(shape {shape} of {dtype.name}: {total} bytes with the header)")
            a, b = max(pos, lo), min(end, hi)
            if a < b:
                out[a - lo:b - lo] = piece[a - pos:b - pos]
            pos = end
        if pos != total:
            raise IDXError(f"{name}: payload truncated: the header's shape {shape} of "
                           f"{dtype.name} needs {total - length} bytes, the file has "
                           f"{pos - length}")
    arr = np.frombuffer(out, dtype).reshape(stop - start, *shape[1:])
    return (arr.astype(dtype.newbyteorder("="), copy=False), shape[0],
            hasher.hexdigest() if hasher is not None else None)


def _chain(first: bytes, rest):
    yield first
    yield from rest


def _raw(f):
    while piece := f.read(_CHUNK):
        yield piece


def _inflated(f, name: str, stop_after: int | None = None):
    """The inflated content of gzip file ``f``, piece by piece (members after one another);
    with ``stop_after``, only its first bytes (at least that many, if it has them)."""
    inflate = zlib.decompressobj(wbits=31)
    data = b""
    seen = 0
    try:
        while stop_after is None or seen < stop_after:
            if not data:
                data = f.read(_CHUNK)
                if not data:
                    break
            if inflate.eof:
                data = data.lstrip(b"\0")
                if not data:
                    continue
                inflate = zlib.decompressobj(wbits=31)
            piece = inflate.decompress(data, _CHUNK)
            data = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
            if piece:
                seen += len(piece)
                yield piece
    except zlib.error as e:
        raise IDXError(f"{name}: broken gzip data ({e})") from None
    if stop_after is None and not inflate.eof:
        raise IDXError(f"{name}: broken gzip data (the file ends before the end of its "
                       "compressed stream: it is cut short)")

