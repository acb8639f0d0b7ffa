"""A run folder's files, read and checked before anything uses them; its lock; --force's cleanup.

A run folder (written by ``softmaxlab train``) holds ``config.json``, ``model.safetensors``,
``optimizer.safetensors``, ``state.json`` and ``history.json`` (see ``checkpoint``), the pictures
``curves.png`` and ``predictions.png``, ``report.html``, ``eval/`` and the lock file. Every reader
here checks what it reads (JSON types and keys, tensor names, shapes, dtypes, finiteness, the
safetensors metadata) and raises ``RunFolderError`` naming the file and the field; no other
exception escapes for a bad file. No pickle is ever read.

One command at a time writes a run folder: ``lock`` takes an advisory ``flock`` on
``.softmaxlab.lock`` inside it and writes its PID there; a second command fails at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .config import TrainConfig
from .errors import ConfigError, RunFolderError, os_fault

FORMAT = "softmaxlab-run-1"
LOCK_FILE = ".softmaxlab.lock"
CHECKPOINT_FILES = ("model.safetensors", "optimizer.safetensors", "state.json", "history.json")
# what softmaxlab writes into a run folder (and eval/), and nothing else
OWN_FILES = frozenset(("config.json", *CHECKPOINT_FILES, "curves.png", "predictions.png",
                       "report.html"))
EVAL_DIR = "eval"
EVAL_FILES = frozenset(("metrics.json", "confusion_matrix.png", "reliability.png",
                        "mistakes.png"))
DAMAGED = "the run folder is damaged or was not written by softmaxlab"


def _fail(path: Path, problem: str) -> RunFolderError:
    return RunFolderError(f"{path}: {problem}; {DAMAGED}")


def check_folder(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder; give the run folder that `softmaxlab "
                             "train` wrote (it holds config.json and model.safetensors)")
    return run_dir


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise RunFolderError(f"{path} is missing: {path.parent} is not a complete softmaxlab run "
                             "folder")
    return path


def read_json_file(path: Path):
    """The JSON in ``path``; RunFolderError when it is missing or not JSON (NaN is not JSON)."""
    try:
        with open(_existing(path), "rb") as f:
            return json.loads(f.read().decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise _fail(path, f"not valid JSON ({e})") from None
    except OSError as e:
        raise os_fault(path, e, "read", "check the file's permissions") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _field(obj: dict, key: str, kind, path: Path, where: str = ""):
    """``obj[key]`` checked to be of ``kind`` (bool is never an int here)."""
    if not isinstance(obj, dict) or key not in obj:
        raise _fail(path, f"the field {where}{key} is missing")
    value = obj[key]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise _fail(path, f"the field {where}{key} is {value!r}, not {_kind_name(kind)}")
    return value


def _kind_name(kind) -> str:
    names = {int: "an integer", str: "a string", dict: "an object", list: "a list",
             float: "a number"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind if k is not type(None))
    return names.get(kind, kind.__name__)


# ---------------------------------------------------------------------------- config.json


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """``run_dir/config.json``, checked: format, config (a valid TrainConfig), dataset facts.

    Returns the dict as written, with ``config`` completed by the defaults of options it lacks.
    """
    path = check_folder(run_dir) / "config.json"
    cfg = read_json_file(path)
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise RunFolderError(f"{path} is not a {FORMAT} run config; {DAMAGED}")
    options = _field(cfg, "config", dict, path)
    try:
        config = TrainConfig.from_dict(options)
    except ConfigError as e:
        raise _fail(path, f"the field config.{e}") from None
    except TypeError as e:  # an option given twice or in a form from_dict cannot take
        raise _fail(path, f"the field config is not a training configuration ({e})") from None
    ds = _field(cfg, "dataset", dict, path)
    names = _field(ds, "class_names", list, path, "dataset.")
    if len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise _fail(path, "the field dataset.class_names must be a list of 2 or more names")
    shape = _field(ds, "image_shape", list, path, "dataset.")
    if len(shape) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                  for s in shape):
        raise _fail(path, f"the field dataset.image_shape is {shape!r}, not [height, width]")
    if _field(ds, "num_features", int, path, "dataset.") != shape[0] * shape[1]:
        raise _fail(path, f"dataset.num_features is {ds['num_features']}, but image_shape "
                          f"{shape} has {shape[0] * shape[1]} pixels")
    if _field(ds, "num_classes", int, path, "dataset.") != len(names):
        raise _fail(path, f"dataset.num_classes is {ds['num_classes']}, but class_names has "
                          f"{len(names)} names")
    if cfg.get("data_dir") is not None:
        _field(cfg, "data_dir", str, path)
    if "data" in cfg:  # your own data's record (checked in full when it is read again)
        _field(_field(cfg, "data", dict, path), "sources", dict, path, "data.")
    return {**cfg, "config": config.to_dict()}


# ---------------------------------------------------------------------------- history, state


HISTORY_NUMBERS = ("train_loss", "train_acc", "test_acc", "seconds")


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """``run_dir/history.json``, checked: one record per epoch, epochs 1, 2, ..., finite numbers."""
    path = Path(run_dir) / "history.json"
    history = read_json_file(path)
    if not isinstance(history, list):
        raise _fail(path, "not a list of per-epoch records")
    for i, row in enumerate(history):
        where = f"record {i + 1}: "
        if not isinstance(row, dict):
            raise _fail(path, f"{where}not an object")
        if _field(row, "epoch", int, path, f"record {i + 1} ") != i + 1:
            raise _fail(path, f"{where}epoch is {row['epoch']}, expected {i + 1}")
        keys = HISTORY_NUMBERS + tuple(k for k in ("val_acc", "lr") if row.get(k) is not None)
        for key in keys:
            if not math.isfinite(_field(row, key, (int, float), path, f"record {i + 1} ")):
                raise _fail(path, f"{where}{key} is {row[key]}, not a finite number")
    return history


def read_state(run_dir: str | os.PathLike) -> dict:
    """``run_dir/state.json``, checked: format, epoch, optimizer_state (an object or null)."""
    path = Path(run_dir) / "state.json"
    state = read_json_file(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise _fail(path, f"not a {FORMAT} state file")
    if _field(state, "epoch", int, path) < 0:
        raise _fail(path, f"the field epoch is {state['epoch']}, not a number of epochs")
    return state


# ---------------------------------------------------------------------------- tensors


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file, checked: our format, an epoch count,
    floating-point finite tensors (converted to float32)."""
    try:
        with safe_open(_existing(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, ValueError, RuntimeError, UnicodeDecodeError) as e:
        raise _fail(path, f"not a readable safetensors file ({e})") from None
    except OSError as e:
        raise os_fault(path, e, "read", "check the file's permissions") from None
    if meta.get("format") != FORMAT:
        raise _fail(path, f"its metadata does not say format {FORMAT}")
    epoch = meta.get("epoch", "")
    if not (epoch.isascii() and epoch.isdigit()):
        raise _fail(path, f"its metadata's epoch is {epoch!r}, not a number of epochs")
    for name, t in tensors.items():
        if not t.dtype.is_floating_point:
            raise _fail(path, f"the tensor {name} is {t.dtype}, not floating point")
        tensors[name] = t = t.float()
        if not bool(torch.isfinite(t).all()):
            raise RunFolderError(
                f"{path}: the tensor {name} holds non-finite values (nan or inf): the run "
                "diverged before this was saved; train a new run with a smaller --lr")
    return tensors, meta


def check_tensor(path: Path, tensors: dict[str, torch.Tensor], name: str,
                 shape: tuple[int, ...]) -> torch.Tensor:
    """``tensors[name]``, checked to have ``shape``."""
    if name not in tensors:
        raise _fail(path, f"the tensor {name} is missing")
    t = tensors[name]
    if tuple(t.shape) != shape:
        raise _fail(path, f"the tensor {name} has shape {tuple(t.shape)}, expected {shape}")
    return t


# ---------------------------------------------------------------------------- the lock


@contextlib.contextmanager
def lock(run_dir: str | os.PathLike, create: bool = False) -> Iterator[Path]:
    """Hold the run folder's lock while the block runs (created with the folder if ``create``).

    Raises RunFolderError at once, naming the holder's PID, when another process holds it.
    The lock file stays; it never counts as content of the folder.
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    try:
        if create:
            run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise os_fault(path, e) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunFolderError(f"{run_dir} is in use by process {holder} (another softmaxlab "
                                 "command is writing it); wait for it to finish, or use "
                                 "another folder") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise os_fault(path, e) from None
        yield path
    finally:
        os.close(fd)  # (releases the lock)


# ---------------------------------------------------------------------------- --out, --force


def _is_temp(name: str) -> bool:
    """A leftover temp file of an interrupted atomic write (``.<name>.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def contents(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` other than its lock file, sorted ([] for a missing folder)."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE)


def foreign(run_dir: Path) -> list[str]:
    """What in ``run_dir`` softmaxlab did not write (eval/'s unknown files as eval/NAME)."""
    out = []
    for name in contents(run_dir):
        path = run_dir / name
        if path.is_symlink():
            out.append(name)
        elif name == EVAL_DIR and path.is_dir():
            out += [f"{EVAL_DIR}/{n.name}" for n in path.iterdir()
                    if n.is_symlink() or not n.is_file()
                    or n.name not in EVAL_FILES and not _is_temp(n.name)]
        elif not path.is_file() or name not in OWN_FILES and not _is_temp(name):
            out.append(name)
    return out


def clear(run_dir: Path) -> None:
    """Remove softmaxlab's own files (and eval/) from ``run_dir``; the caller checked ``foreign``."""
    try:
        for name in contents(run_dir):
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    except OSError as e:
        raise os_fault(run_dir, e, "clear", "check the folder's permissions") from None
