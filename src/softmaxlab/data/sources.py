"""Where a dataset's files are: look in the usual places, else download them, and verify them.

Lookup order without ``data_dir``: the user cache (``$XDG_CACHE_HOME/softmaxlab/<name>``, default
``~/.cache/softmaxlab/<name>``), the system package's folder (Debian's ``dataset-fashion-mnist``),
torchvision-style folders ``./data/<Name>/raw`` and ``../data/<Name>/raw`` (the book's root), then a
download into the cache. With ``data_dir`` (or ``$SOFTMAXLAB_DATA``) only that folder is used, and
missing files are downloaded into it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from .specs import ROLES, DatasetSpec

CONNECT_TIMEOUT = 10.0  # seconds to open a connection to a mirror
READ_TIMEOUT = 30.0  # seconds a read may stall before the mirror is given up
CHUNK = 1 << 20  # download chunk, bytes


class DataNotFoundError(RuntimeError):
    """The dataset is in none of the places looked in and could not be downloaded."""


class ChecksumError(ValueError):
    """A file whose md5 is none of the accepted ones."""


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir(spec: DatasetSpec) -> Path:
    """The user cache folder for ``spec``, honouring ``XDG_CACHE_HOME``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "softmaxlab" / spec.name


def candidate_dirs(spec: DatasetSpec) -> list[Path]:
    """The folders looked in, in order, when no data dir is given."""
    dirs = [cache_dir(spec)] + [Path(d) for d in spec.system_dirs]
    for root in (Path("data"), Path("..") / "data"):
        dirs.append(root / spec.torchvision_name / "raw")
    return dirs


def file_in(folder: Path, name: str) -> Path | None:
    """``folder/name.gz`` or ``folder/name``, whichever exists (the .gz first)."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def files_in(folder: Path, spec: DatasetSpec) -> dict[str, Path | None]:
    return {role: file_in(folder, spec.files[role]) for role in ROLES}


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def verify(path: Path, content: bytes, spec: DatasetSpec, name: str | None = None) -> None:
    """Check a file against the spec's md5s: either its raw ``content`` or the file's own bytes.

    ``content`` is the uncompressed payload (already in memory for parsing); ``name`` is the
    spec's file name when ``path`` is a temporary file. Raises ChecksumError.
    """
    name = name or path.name.removesuffix(".gz")
    accepted = spec.md5.get(name)
    if not accepted:
        return
    if md5_of(content) in accepted:
        return
    if md5_of(path.read_bytes()) in accepted:
        return
    raise ChecksumError(
        f"{path}: checksum mismatch (md5 of the content is {md5_of(content)}, expected "
        f"{' or '.join(accepted)}); the file is corrupted or is not {spec.name}'s {name}: "
        "delete it and get it again"
    )


def download(
    url: str,
    dest: Path,
    progress: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` via a temporary file in the same folder, renamed at the end.

    ``check(tmp_path)`` may raise to reject the download before the rename. A failed or
    interrupted download leaves nothing at ``dest``. Returns ``dest``.
    """
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with urllib.request.urlopen(url, timeout=connect_timeout) as resp:
            _set_read_timeout(resp, read_timeout)
            total = int(resp.headers.get("Content-Length") or 0) or None
            with os.fdopen(fd, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress, leave=False,
            ) as bar:
                fd = -1
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and os.path.getsize(tmp) != total:
                raise OSError(f"incomplete download: {os.path.getsize(tmp)} of {total} bytes")
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, dest)
        return dest
    finally:
        if fd != -1:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _set_read_timeout(resp, seconds: float) -> None:
    """After connecting, let each read stall at most ``seconds`` (urllib has one timeout only)."""
    sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def fetch(
    spec: DatasetSpec,
    folder: Path,
    names: Sequence[str],
    mirrors: Sequence[str],
    progress: bool,
) -> list[str]:
    """Download each of ``names`` (as ``name.gz``) into ``folder``, trying ``mirrors`` in order.

    Each file is verified before it is renamed into place. Returns the failures (one line per
    mirror tried) for the error message; an empty list means every file arrived.
    """
    from .idx import read_bytes

    failures = []
    for name in names:
        for base in mirrors:
            url = base.rstrip("/") + "/" + name + ".gz"
            dest = folder / f"{name}.gz"
            try:
                download(url, dest, progress=progress,
                         check=lambda p, name=name: verify(p, read_bytes(p), spec, name=name))
                break
            except (OSError, urllib.error.URLError, ValueError) as e:
                failures.append(f"{url}: {getattr(e, 'reason', None) or e}")
        else:
            return failures
    return []


def locate(
    spec: DatasetSpec,
    data_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    offline: bool | None = None,
    progress: bool | None = None,
) -> dict[str, Path]:
    """Find (or download) the four files of ``spec``; role -> path.

    Args:
        data_dir: the only folder to use (files directly in it); default ``$SOFTMAXLAB_DATA``,
            else the lookup order of this module's docstring.
        mirror: a base URL to download from instead of the spec's mirrors (``$SOFTMAXLAB_MIRROR``).
        offline: never download (``$SOFTMAXLAB_OFFLINE=1``).
        progress: show a download progress bar; default: when stderr is a terminal.
    Raises:
        DataNotFoundError: naming every place looked in and how to get the data.
    """
    data_dir = data_dir or os.environ.get("SOFTMAXLAB_DATA") or None
    mirror = mirror or os.environ.get("SOFTMAXLAB_MIRROR") or None
    offline = env_flag("SOFTMAXLAB_OFFLINE") if offline is None else offline
    progress = sys.stderr.isatty() if progress is None else progress
    mirrors = [mirror] if mirror else list(spec.mirrors)

    if data_dir is not None:
        looked = [Path(data_dir)]
        target = Path(data_dir)
    else:
        looked = candidate_dirs(spec)
        for folder in looked:
            found = files_in(folder, spec)
            if all(found.values()):
                return found  # type: ignore[return-value]
        target = cache_dir(spec)

    found = files_in(target, spec)
    if all(found.values()):
        return found  # type: ignore[return-value]
    missing = [spec.files[r] for r in ROLES if found[r] is None]
    failures: list[str] = []
    if not offline:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            failures.append(f"cannot create {target}: {e}")
        else:
            failures = fetch(spec, target, missing, mirrors, progress)
            found = files_in(target, spec)
            if all(found.values()):
                return found  # type: ignore[return-value]
    raise DataNotFoundError(_not_found_message(spec, looked, target, missing, mirrors, offline,
                                               failures))


def _not_found_message(spec, looked, target, missing, mirrors, offline, failures) -> str:
    lines = [f"{spec.name} not found. Looked for {', '.join(n + '[.gz]' for n in missing)} in:"]
    lines += [f"  {p}" for p in looked]
    if offline:
        lines.append("Downloading is off (--offline or SOFTMAXLAB_OFFLINE=1).")
    elif failures:
        lines.append(f"Downloading into {target} failed:")
        lines += [f"  {f}" for f in failures]
    lines.append("To get the data, any of:")
    if spec.name == "fashion-mnist" and shutil.which("apt-get"):
        lines.append("  - sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu)")
    lines.append("  - put the four files (.gz or raw) in a folder and pass --data-dir DIR")
    lines.append("  - download them from: " + ", ".join(mirrors) + " (or give --mirror URL)")
    return "\n".join(lines)
