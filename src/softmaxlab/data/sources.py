"""Where a dataset's files are: look in the usual places, else download them, and verify them.

Lookup order without ``data_dir``: the user cache (``$XDG_CACHE_HOME/softmaxlab/<name>``, default
``~/.cache/softmaxlab/<name>``), the system package's folder (Debian's ``dataset-fashion-mnist``),
torchvision-style folders ``./data/<Name>/raw`` and ``../data/<Name>/raw`` (the book's root); the
first folder holding all four files wins. Otherwise the missing files are downloaded into the cache
(completing an interrupted earlier download). With ``data_dir`` (or ``$SOFTMAXLAB_DATA``) only that
folder is used, and missing files are downloaded into it.

A download goes to a temporary file beside its destination and is renamed into place only once it
is complete and its md5 is right, so an interrupted or bad download never leaves a file behind.

A dataset that comes in an archive (EMNIST's ``gzip.zip``) is downloaded as that one file, checked
against the archive's md5, kept, and its members for the dataset are taken out of it (each
written atomically); an archive already in the folder is checked and used without a download,
also offline.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import ssl
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError, os_fault
from ..fsutil import atomic_path
from .idx import is_gzip, parse_idx, read_bytes
from .specs import ROLES, DatasetSpec

CONNECT_TIMEOUT = 10.0  # seconds to open a connection to a mirror
READ_TIMEOUT = 30.0  # seconds a mirror may stay silent (before the headers or mid-file)
CHUNK = 1 << 20  # download chunk, bytes
_URL_SCHEMES = ("http://", "https://", "file://")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
# what to do about a damaged or wrong file that was found
REPLACE_HINT = "delete or replace it (once it is gone, softmaxlab downloads a fresh copy)"


class DataNotFoundError(DataError, RuntimeError):
    """The dataset is in none of the places looked in and could not be downloaded."""


class ChecksumError(DataError):
    """A file whose md5 is not the one its dataset spec expects."""


class IncompleteDownload(OSError):
    """The server closed the connection before sending the whole file."""


def cache_dir(spec: DatasetSpec) -> Path:
    """The user cache folder for ``spec``, honouring ``XDG_CACHE_HOME`` (ignored if relative)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "softmaxlab" / spec.cache_folder


def candidate_dirs(spec: DatasetSpec) -> list[Path]:
    """The folders looked in, in order, when no data dir is given (absolute paths)."""
    dirs = [cache_dir(spec)] + [Path(d) for d in spec.system_dirs]
    for root in (Path("data"), Path("..") / "data"):
        dirs.append(Path(os.path.abspath(root / spec.torchvision_name / "raw")))
    return dirs


def file_in(folder: Path, name: str) -> Path | None:
    """``folder/name.gz`` or ``folder/name``, whichever exists (the .gz first)."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def files_in(folder: Path, spec: DatasetSpec) -> dict[str, Path | None]:
    """Role -> the file of ``spec`` in ``folder``, or None where it is missing."""
    return {role: file_in(folder, spec.files[role]) for role in ROLES}


def md5_of(data: bytes) -> str:
    """The hex md5 of ``data`` (an integrity check, not security)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_of_file(path: Path) -> str:
    """The hex md5 of the file at ``path``, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def md5_problem(path: Path, content: bytes | None, spec: DatasetSpec, name: str,
                content_md5: str | None = None) -> str | None:
    """Why the file ``path`` (spec file ``name``) fails its md5 check, or None if it passes.

    ``content`` is the file's uncompressed payload (already in memory for parsing), or None
    with ``content_md5`` its md5 (taken as it streamed by, when only part of it is kept). The
    file passes if the md5 of ``content`` is the spec's uncompressed md5, or if it is gzipped and its
    own md5 is the spec's .gz md5 (Debian's re-gzipped copies pass the first way only). A file
    the spec knows no md5 for, in its form, is not checked.
    """
    checks = []
    if name in spec.md5_raw:
        checks.append(("the uncompressed content", spec.md5_raw[name],
                       lambda: content_md5 or md5_of(content)))
    if name in spec.md5_gz and is_gzip(path):
        checks.append(("the .gz file", spec.md5_gz[name], lambda: md5_of_file(path)))
    found = []
    for what, expected, compute in checks:
        got = compute()
        if got == expected:
            return None
        found.append(f"md5 of {what} is {got}, expected {expected}")
    return "; ".join(found) or None


def verify(path: Path, content: bytes | None, spec: DatasetSpec,
           content_md5: str | None = None) -> None:
    """Check a found file of ``spec`` against its md5s (see :func:`md5_problem`).

    Raises:
        ChecksumError: naming the file, both md5s and what to do.
    """
    name = path.name.removesuffix(".gz")
    problem = md5_problem(path, content, spec, name, content_md5)
    if problem is not None:
        raise ChecksumError(
            f"{path}: checksum mismatch ({problem}): the file is damaged or is not {spec.name}'s "
            f"{name}; {REPLACE_HINT}"
        )


class _ReadTimeoutMixin:
    """An HTTP(S) connection that connects within ``timeout``, then waits ``read_timeout``."""

    def __init__(self, *args, read_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self.read_timeout)


class _HTTPConnection(_ReadTimeoutMixin, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ReadTimeoutMixin, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self._connection = functools.partial(_HTTPConnection, read_timeout=read_timeout)

    def http_open(self, req):
        return self.do_open(self._connection, req)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # loading the CA certificates takes ~50 ms: do it once


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self._connection = functools.partial(_HTTPSConnection, read_timeout=read_timeout)

    def https_open(self, req):
        return self.do_open(self._connection, req, context=_ssl_context())


def download(
    url: str,
    dest: Path,
    check: Callable[[Path], None] | None = None,
    progress: bool = False,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
) -> Path:
    """Download ``url`` to ``dest`` via a temporary file beside it, renamed at the end.

    Args:
        check: called with the complete temporary file; raising rejects the download.
        progress: show a tqdm progress bar on stderr.
        connect_timeout, read_timeout: seconds; default CONNECT_TIMEOUT and READ_TIMEOUT.
    Returns:
        ``dest``. A failed, rejected or interrupted download leaves nothing at ``dest``.
    Raises:
        OSError (URLError, TimeoutError, IncompleteDownload, ...), http.client.HTTPException,
        ValueError (a bad URL), or whatever ``check`` raises.
    """
    from tqdm.auto import tqdm

    connect_timeout = CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
    read_timeout = READ_TIMEOUT if read_timeout is None else read_timeout
    opener = urllib.request.build_opener(_HTTPHandler(read_timeout), _HTTPSHandler(read_timeout))
    with atomic_path(dest, writes_fault=False) as tmp:
        with opener.open(url, timeout=connect_timeout) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress, leave=False) as bar:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            size = out.tell()
        if total is not None and size != total:
            raise IncompleteDownload(f"the connection closed after {size} of {total} bytes")
        if check is not None:
            check(Path(tmp))
    return dest


def _describe(e: BaseException, connect_timeout: float, read_timeout: float) -> str:
    """A one-line reason for a failed download."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError) and isinstance(e.reason, BaseException):
        e = e.reason
    if isinstance(e, TimeoutError):
        return (f"timed out (connect timeout {connect_timeout:g} s, read timeout "
                f"{read_timeout:g} s)")
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def fetch(
    spec: DatasetSpec,
    folder: Path,
    names: Sequence[str],
    mirrors: Sequence[str],
    progress: bool = False,
) -> list[str]:
    """Download each of ``names`` (as ``name.gz``) into ``folder``, trying ``mirrors`` in order.

    Each file must be a valid IDX file with the spec's md5 before it is renamed into place. The
    mirror that served the last file is tried first for the next one. Returns the failures, one
    ``"url: reason"`` line per attempt that failed; every file arrived iff no file ran out of
    mirrors (files after one that could not be downloaded are not tried).
    """
    connect_timeout, read_timeout = CONNECT_TIMEOUT, READ_TIMEOUT
    failures: list[str] = []
    order = list(mirrors)
    for name in names:
        dest = folder / f"{name}.gz"

        def check(tmp: Path, name: str = name) -> None:
            content = read_bytes(tmp, "the downloaded file")
            parse_idx(content, "the downloaded file")
            problem = md5_problem(tmp, content, spec, name)
            if problem is not None:
                raise ChecksumError(f"checksum mismatch ({problem})")

        for base in order:
            url = base.rstrip("/") + "/" + name + ".gz"
            try:
                download(url, dest, check=check, progress=progress,
                         connect_timeout=connect_timeout, read_timeout=read_timeout)
            except (OSError, http.client.HTTPException, ValueError) as e:
                failures.append(f"{url}: {_describe(e, connect_timeout, read_timeout)}")
            else:
                order = [base] + [m for m in order if m != base]
                break
        else:
            return failures
    return failures


def archive_problem(path: Path, spec: DatasetSpec) -> str | None:
    """Why ``path`` is not ``spec``'s archive (its md5, or not a zip), or None if it is."""
    got = md5_of_file(path)
    if got != spec.archive.md5:
        return f"checksum mismatch (md5 of {spec.archive.name} is {got}, expected {spec.archive.md5})"
    if not zipfile.is_zipfile(path):
        return "not a zip file"
    return None


def extract(archive: Path, spec: DatasetSpec, folder: Path, names: Sequence[str]) -> None:
    """Write the members ``<prefix><name>.gz`` of ``archive`` as ``folder/<name>.gz``, each
    atomically (the zip's CRC is checked as each is read).

    Raises:
        DataError: a member is missing, or the zip is damaged.
    """
    prefix = spec.archive.prefix
    try:
        with _open_zip(archive) as z:
            members = set(z.namelist())
            for name in names:
                member = f"{prefix}{name}.gz"
                if member not in members:
                    raise DataError(f"{archive}: no member {member}: it is not {spec.name}'s "
                                    f"{spec.archive.name}; {REPLACE_HINT}")
                with atomic_path(folder / f"{name}.gz") as tmp, z.open(member) as src, \
                        open(tmp, "wb") as out:
                    while block := src.read(CHUNK):
                        out.write(block)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise DataError(f"{archive}: damaged zip ({e}); {REPLACE_HINT}") from None


def _open_zip(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except OSError as e:
        raise os_fault(archive, e, "read", "check the file and its permissions") from None


def fetch_archive(
    spec: DatasetSpec,
    folder: Path,
    names: Sequence[str],
    mirrors: Sequence[str],
    progress: bool = False,
    offline: bool = False,
) -> list[str]:
    """Take ``names`` out of ``spec``'s archive in ``folder``, downloading it first (trying
    ``mirrors`` in order) unless it is there or ``offline``. Returns the failed downloads, one
    ``"url: reason"`` line each (the files are there iff the archive was).

    Raises:
        ChecksumError: an archive already in ``folder`` fails its md5.
        DataError: its members are missing or damaged.
    """
    archive = folder / spec.archive.name
    failures: list[str] = []
    if archive.is_file():
        try:
            problem = archive_problem(archive, spec)
        except OSError as e:
            raise os_fault(archive, e, "read", "check the file and its permissions") from None
        if problem is not None:
            raise ChecksumError(f"{archive}: {problem}: the file is damaged or is not "
                                f"{spec.name}'s archive; {REPLACE_HINT}")
    elif offline:
        return failures
    else:
        def check(tmp: Path) -> None:
            problem = archive_problem(tmp, spec)
            if problem is not None:
                raise ChecksumError(problem)

        for base in mirrors:
            url = base.rstrip("/") + "/" + spec.archive.name
            try:
                download(url, archive, check=check, progress=progress,
                         connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
            except (OSError, http.client.HTTPException, ValueError) as e:
                failures.append(f"{url}: {_describe(e, CONNECT_TIMEOUT, READ_TIMEOUT)}")
            else:
                break
        else:
            return failures
    extract(archive, spec, folder, names)
    return failures


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ConfigError(f"${name}={os.environ[name]!r} is not understood; set it to 1 (on) or 0 "
                         "(off)")
    return value in _TRUE


def _check_mirror(mirror: str, source: str) -> str:
    if not mirror.startswith(_URL_SCHEMES):
        raise ConfigError(f"{source} {mirror!r} is not a URL; give a base URL starting with "
                         f"{', '.join(_URL_SCHEMES)} that serves the <file>.gz files")
    return mirror


@dataclass(frozen=True)
class Location:
    """Where a dataset is, without downloading: ``found``, the folder holding all its files (or
    None); ``target``, the folder missing files go into; ``archive``, its archive in ``target``
    when there (the files are taken out of it on first use); ``looked``, each folder looked in
    with a note."""

    found: Path | None
    target: Path
    archive: Path | None
    looked: tuple[tuple[Path, str], ...]


def where(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> Location:
    """Where ``spec``'s files are (see the module docstring for the order); never downloads.

    ``data_dir``: the only folder to use; default ``$SOFTMAXLAB_DATA``, else the lookup order.
    """
    source = "--data-dir"
    if not data_dir and os.environ.get("SOFTMAXLAB_DATA"):
        data_dir, source = os.environ["SOFTMAXLAB_DATA"], "$SOFTMAXLAB_DATA"
    if data_dir:
        target = Path(data_dir).expanduser()
        looked: tuple[tuple[Path, str], ...] = ((target, f"given by {source}"),)
    else:
        target = cache_dir(spec)
        looked = tuple((d, "") for d in candidate_dirs(spec))
    found = next((d for d, _ in looked if all(files_in(d, spec).values())), None)
    archive = target / spec.archive.name if spec.archive else None
    return Location(found, target, archive if archive and archive.is_file() else None, looked)


def locate(
    spec: DatasetSpec,
    data_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    offline: bool | None = None,
    progress: bool | None = None,
) -> dict[str, Path]:
    """Find (or download) the four files of ``spec``; returns role -> path.

    Args:
        data_dir: the only folder to use (files directly in it); default ``$SOFTMAXLAB_DATA``,
            else the lookup order of this module's docstring.
        mirror: a base URL to download from instead of the spec's mirrors (default
            ``$SOFTMAXLAB_MIRROR``).
        offline: never download (default: ``$SOFTMAXLAB_OFFLINE=1``); an archive already there
            is still unpacked.
        progress: show a download progress bar; default: when stderr is a terminal.
    Raises:
        DataNotFoundError: naming every place looked in, what failed, and how to get the data.
        ChecksumError: an archive that was there fails its md5.
        ConfigError: a mirror that is not a URL, or an unreadable ``$SOFTMAXLAB_OFFLINE``.
    """
    mirrors = mirrors_for(spec, mirror)
    offline = _env_flag("SOFTMAXLAB_OFFLINE") if offline is None else offline
    progress = sys.stderr.isatty() if progress is None else progress

    place = where(spec, data_dir)
    if place.found is not None:
        return files_in(place.found, spec)  # type: ignore[return-value]
    target = place.target
    found = files_in(target, spec)
    failures: list[str] = []
    missing = [spec.files[r] for r in ROLES if found[r] is None]
    if spec.archive is not None and (place.archive is not None or not offline):
        failures = _make_folder(target)
        if not failures:
            failures = fetch_archive(spec, target, missing, mirrors, progress, offline)
    elif not offline:
        failures = _make_folder(target)
        if not failures:
            failures = fetch(spec, target, missing, mirrors, progress)
    found = files_in(target, spec)
    if all(found.values()):
        return found  # type: ignore[return-value]
    raise DataNotFoundError(_not_found_message(spec, list(place.looked), target, mirrors,
                                               offline, failures))


def mirrors_for(spec: DatasetSpec, mirror: str | None = None) -> list[str]:
    """The base URLs to download ``spec`` from: ``mirror``, else ``$SOFTMAXLAB_MIRROR``, else the
    spec's own, in order. ConfigError for one that is not a URL."""
    if mirror:
        return [_check_mirror(mirror, "--mirror")]
    if os.environ.get("SOFTMAXLAB_MIRROR"):
        return [_check_mirror(os.environ["SOFTMAXLAB_MIRROR"], "$SOFTMAXLAB_MIRROR")]
    return list(spec.mirrors)


def _make_folder(folder: Path) -> list[str]:
    """Create ``folder``; [] or the one failure line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return [f"cannot create the folder {folder}: {e.strerror or e}"]
    return []


def _folder_state(folder: Path, spec: DatasetSpec) -> str:
    """What ``folder`` holds of ``spec``'s files, for the not-found message."""
    if not folder.exists():
        return "no such folder"
    if not folder.is_dir():
        return "not a folder"
    found = files_in(folder, spec)
    missing = [spec.files[r] for r in ROLES if found[r] is None]
    if len(missing) == len(ROLES):
        return "none of the files"
    return f"{len(ROLES) - len(missing)} of the {len(ROLES)} files; missing {', '.join(missing)}"


def _not_found_message(
    spec: DatasetSpec,
    looked: list[tuple[Path, str]],
    target: Path,
    mirrors: Sequence[str],
    offline: bool,
    failures: list[str],
) -> str:
    names = ", ".join(spec.files[r] for r in ROLES)
    head = f"{spec.name} not found: no folder holds all four files ({names}; each .gz or uncompressed)."
    lines = [head, "Looked in:"]
    for folder, note in looked:
        notes = "; ".join(x for x in (note, _folder_state(folder, spec)) if x)
        lines.append(f"  {folder} ({notes})")
    if offline:
        lines.append("Downloading is off (--offline or SOFTMAXLAB_OFFLINE=1).")
    elif failures and spec.archive is not None:
        lines.append(f"Downloading {spec.archive.name} into {target} failed:")
        lines += [f"  {f}" for f in failures]
    elif failures:
        lines.append(f"Downloading the missing files into {target} failed:")
        lines += [f"  {f}" for f in failures]
    lines.append("To get the data, any of:")
    if spec.system_package:
        where = f" (it installs {', '.join(spec.system_dirs)})" if spec.system_dirs else ""
        lines.append(f"  - sudo apt-get install {spec.system_package}   on Debian/Ubuntu{where}")
    lines.append("  - put the four files (.gz or uncompressed) in a folder DIR and pass --data-dir "
                 "DIR (or set SOFTMAXLAB_DATA=DIR)")
    if spec.archive is not None:
        lines.append(f"  - download {spec.archive.name} into {target} from "
                     + " or ".join(mirrors) + f" (md5 {spec.archive.md5}); softmaxlab takes the "
                     "files out of it")
    else:
        lines.append(f"  - download <file>.gz for each file into {target} from "
                     + " or ".join(mirrors))
    if offline:
        lines.append("  - run without --offline (and without SOFTMAXLAB_OFFLINE=1) to let "
                     "softmaxlab download them")
    else:
        lines.append("  - give another server with --mirror URL (or SOFTMAXLAB_MIRROR=URL)")
    return "\n".join(lines)
