"""Safe file writes: never a half-written file where a good one was.

Every write goes to a temp file beside its destination and is renamed over it only once complete,
so a reader sees the old file or the new one, never a mix, whatever happens mid-write. With
``durable=True`` the file's data is also flushed to the disk (``fsync``) before the rename and the
folder's entry after it, so the new file survives a power loss once the call returns; without it
the rename is atomic for other processes but may not survive a power loss. An ``OSError`` (full
disk, read-only file system, no permission) becomes a ``SystemFault`` naming the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import SystemFault, os_fault


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False, writes_fault: bool = True,
                create: bool = True) -> Iterator[str]:
    """Yield a temp file path beside ``path``; on success rename it over ``path``, else delete it.

    ``writes_fault``: an OSError raised in the ``with`` block is a SystemFault on ``path`` too
    (false where the block's OSErrors mean something else, e.g. a download's network errors).
    ``create``: create the folder if it is missing (else a missing folder is a SystemFault).
    """
    path = Path(path)
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    except OSError as e:
        raise os_fault(path, e) from e
    try:
        try:
            yield tmp
        except OSError as e:
            if writes_fault and not isinstance(e, SystemFault):
                raise os_fault(path, e) from e
            raise
        try:
            if durable:
                _fsync(tmp, os.O_RDONLY)
            os.replace(tmp, path)
            if durable:
                _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as e:
            raise os_fault(path, e) from e
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _fsync(path: str | os.PathLike, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str, durable: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically (see the module docstring for ``durable``)."""
    with atomic_path(path, durable) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def dump_json(obj) -> str:
    """``obj`` as the JSON text softmaxlab writes: indented, and NaN or infinity refused."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj, durable: bool = False) -> Path:
    """Write ``obj`` as JSON (``dump_json``) to ``path`` atomically."""
    return write_text(path, dump_json(obj), durable)


def read_json(path: str | os.PathLike):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
