"""A run's checkpoint: save after every epoch, load to resume or to use the model.

A run folder holds
- ``config.json``: the training options, the dataset's facts (class names, image shape) and the
  package version: everything needed to rebuild the model and its preprocessing;
- ``model.safetensors``: ``W`` (D, C) and ``b`` (C,) (the concise model's weight transposed, so
  both impls share one format) and, with ``--standardize``, ``standardize.mean`` / ``.std``;
- ``optimizer.safetensors`` + ``state.json``: the optimiser's tensors and the rest of its state,
  and the epoch count; the shuffles derive from (seed, epoch), so nothing else is needed to resume;
- ``history.json``: one object per epoch.

The four checkpoint files are written together: each to a temp file, all synced to the disk, and
only then renamed into place, so a failed save (a full disk, say) leaves the previous checkpoint
whole. ``model.safetensors``, ``optimizer.safetensors`` and ``state.json`` all carry the epoch
count, so files from different epochs are detected instead of resumed. Reading goes through
``runfolder``, which checks every file before it is used.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save

from . import __version__
from .config import TrainConfig
from .errors import RunFolderError
from .fsutil import atomic_path, dump_json, write_json
from .models import SoftmaxModel, set_weights, weights
from .preprocess import Standardizer
from .runfolder import (
    FORMAT,
    check_folder,
    check_tensor,
    read_history,
    read_run_config,
    read_state,
    read_tensors,
)

if TYPE_CHECKING:
    from .runner import Session

__all__ = ["FORMAT", "RunError", "TrainedModel", "load_trained", "read_history",
           "read_run_config", "record_stop", "restore_session", "save_checkpoint",
           "write_config"]

RunError = RunFolderError  # the name it had before softmaxlab.errors


# ---------------------------------------------------------------------------- saving


def encode_state(obj, prefix: str, tensors: dict[str, torch.Tensor]):
    """Nested optimizer state -> JSON-able structure; tensors go to ``tensors`` by key."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, encode_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [encode_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def model_tensors(session_model, standardizer: Standardizer | None) -> dict[str, torch.Tensor]:
    W, b = weights(session_model)
    tensors = {"W": W, "b": b}
    if standardizer is not None:
        tensors["standardize.mean"] = standardizer.mean
        tensors["standardize.std"] = standardizer.std
    return tensors


def write_config(run_dir: Path, session: Session, data_dir: str | None = None,
                 data_record: dict | None = None) -> None:
    """config.json; ``data_record``: what your own data was read from and how
    (``softmaxlab.data.load_data_spec``), for evaluate, --resume and predict to do the same."""
    ds = session.train
    write_json(run_dir / "config.json", {
        "format": FORMAT,
        "version": __version__,
        "config": session.config.to_dict(),
        "dataset": {"name": session.config.dataset, "class_names": list(ds.class_names),
                    "image_shape": list(ds.image_shape), "num_features": ds.num_features,
                    "num_classes": ds.num_classes, "train_size": session.n_train,
                    "val_size": session.config.val_split,
                    "test_size": len(session.test)},
        # absolute, so `evaluate` / `--resume` find the data from any working folder
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "world_size": 1 if session.group is None else session.group.world_size,
        # --shard: each process's training rows, in rank order
        **({"shard_rows": list(session.rows)} if session.rows is not None else {}),
        **({"data": data_record} if data_record is not None else {}),
    }, durable=True)


def _tensor_bytes(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> bytes:
    """The safetensors file of ``tensors`` (written by us, so a full disk is a plain OSError)."""
    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)


def save_checkpoint(run_dir: str | os.PathLike, session: Session, history: list[dict]) -> None:
    """Write model, optimiser state, history and state of ``session`` after ``len(history)``
    epochs: all four files or, if any write fails, none."""
    run_dir = Path(run_dir)
    meta = {"format": FORMAT, "epoch": str(len(history)), "impl": session.config.impl}
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_state = encode_state(session.optimizer.state_dict()["state"], "state", opt_tensors)
    state = {"format": FORMAT, "epoch": len(history),
             "rng": {"seed": session.config.seed, "next_epoch": len(history)},
             "optimizer_state": opt_state}
    contents = {
        "model.safetensors": _tensor_bytes(model_tensors(session.model, session.standardizer),
                                           meta),
        "optimizer.safetensors": _tensor_bytes(opt_tensors, meta),
        "history.json": dump_json(history).encode(),
        "state.json": dump_json(state).encode(),
    }
    with contextlib.ExitStack() as stack:  # every file is written before any is renamed
        for name, data in contents.items():
            tmp = stack.enter_context(atomic_path(run_dir / name, durable=True, create=False))
            Path(tmp).write_bytes(data)


def record_stop(run_dir: str | os.PathLike, stop: dict) -> None:
    """Add ``stop`` (why training stopped early: reason, epoch, message) to state.json."""
    state = read_state(run_dir)
    write_json(Path(run_dir) / "state.json", {**state, "stopped": stop}, durable=True)


# ---------------------------------------------------------------------------- loading


def decode_state(obj, tensors: dict[str, torch.Tensor], path: Path):
    """The optimiser state encoded by ``encode_state``; RunFolderError where it does not decode."""
    if isinstance(obj, dict) and "__tensor__" in obj:
        name = obj["__tensor__"]
        if not isinstance(name, str) or name not in tensors:
            raise RunFolderError(f"{path}: the optimiser state names the tensor {name!r}, which "
                                 "optimizer.safetensors does not hold; the run folder is damaged")
        # a fresh (aligned) copy: vector kernels may sum in another order on the loaded buffer's
        # alignment, and resuming must give bit-identical results
        return tensors[name].clone()
    if isinstance(obj, dict) and "__dict__" in obj:
        pairs = obj["__dict__"]
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and
                                                  isinstance(p[0], (str, int)) for p in pairs):
            raise RunFolderError(f"{path}: the optimiser state is malformed; the run folder is "
                                 "damaged")
        return {k: decode_state(v, tensors, path) for k, v in pairs}
    if isinstance(obj, list):
        return [decode_state(v, tensors, path) for v in obj]
    if isinstance(obj, dict):
        raise RunFolderError(f"{path}: the optimiser state is malformed; the run folder is damaged")
    return obj


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_flat(v, total: int) -> bool:
    return isinstance(v, torch.Tensor) and tuple(v.shape) == (total,)


def _is_scalar(v) -> bool:
    return isinstance(v, torch.Tensor) and v.numel() == 1


# torch.optim.LBFGS's per-parameter state: field -> check(value, number of parameters in all);
# all but "al" are there once it has taken a step
_LBFGS_STATE = {
    "func_evals": lambda v, n: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "n_iter": lambda v, n: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "d": lambda v, n: _is_flat(v, n),
    "prev_flat_grad": lambda v, n: _is_flat(v, n),
    "t": lambda v, n: _is_number(v) or _is_scalar(v),
    "prev_loss": lambda v, n: _is_number(v) or _is_scalar(v),
    "H_diag": lambda v, n: _is_number(v) or _is_scalar(v),
    "old_dirs": lambda v, n: isinstance(v, list) and all(_is_flat(x, n) for x in v),
    "old_stps": lambda v, n: isinstance(v, list) and all(_is_flat(x, n) for x in v),
    "ro": lambda v, n: isinstance(v, list) and all(_is_scalar(x) for x in v),
    "al": lambda v, n: isinstance(v, list) and all(x is None or _is_scalar(x) for x in v),
}


def _check_optimizer_state(state, optimizer, params: list[torch.Tensor], path: Path) -> None:
    """The decoded optimiser state fits ``optimizer`` and the parameters: SGD's momentum buffers
    (all or none, each of its parameter's shape) or L-BFGS's fields (all of them, each of its
    kind); anything else is a RunFolderError."""
    def fail(what: str) -> RunFolderError:
        return RunFolderError(f"{path}: the optimiser state {what}; the run folder is damaged")

    if not isinstance(state, dict):
        raise fail("is not an object")
    if not state:
        return
    if isinstance(optimizer, torch.optim.LBFGS):
        entry, total = state.get(0), sum(p.numel() for p in params)
        if set(state) != {0} or not isinstance(entry, dict) or \
                set(entry) - {"al"} != set(_LBFGS_STATE) - {"al"}:
            raise fail("is not L-BFGS's")
        for name, check in _LBFGS_STATE.items():
            if name in entry and not check(entry[name], total):
                raise fail(f"has an L-BFGS {name} that does not fit the model")
        return
    if set(state) != set(range(len(params))):
        raise fail(f"has entries {sorted(map(repr, state))} for {len(params)} parameters")
    for i, p in enumerate(params):
        entry = state[i]
        buffer = entry.get("momentum_buffer") if isinstance(entry, dict) else None
        if set(entry if isinstance(entry, dict) else ()) != {"momentum_buffer"} or \
                not isinstance(buffer, torch.Tensor):
            raise fail(f"of parameter {i} is not a momentum buffer")
        if buffer.shape != p.shape:
            raise fail(f"'s momentum_buffer of {i} has shape {tuple(buffer.shape)}, which does "
                       "not fit the model")


def restore_session(run_dir: str | os.PathLike, session: Session) -> list[dict]:
    """Load model, optimiser state and history of ``run_dir`` into ``session``; the history.

    Everything is read and checked before anything is changed.
    """
    run_dir = check_folder(run_dir)
    history = read_history(run_dir)
    state = read_state(run_dir)
    model_path, opt_path = run_dir / "model.safetensors", run_dir / "optimizer.safetensors"
    model, model_meta = read_tensors(model_path)
    opt, opt_meta = read_tensors(opt_path)
    epochs = {len(history), state["epoch"], int(model_meta["epoch"]), int(opt_meta["epoch"])}
    if len(epochs) != 1:
        raise RunFolderError(f"{run_dir}: the saved files are from different epochs "
                             f"({sorted(epochs)}); the run was interrupted while saving and "
                             "cannot be resumed exactly")
    W, b = weights(session.model)
    W = check_tensor(model_path, model, "W", tuple(W.shape))
    b = check_tensor(model_path, model, "b", tuple(b.shape))
    opt_state = None
    if state.get("optimizer_state") is not None:
        opt_state = decode_state(state["optimizer_state"], opt, run_dir / "state.json")
        _check_optimizer_state(opt_state, session.optimizer, list(session.model.parameters()),
                               opt_path)
    set_weights(session.model, W, b)
    if opt_state is not None:
        sd = session.optimizer.state_dict()
        sd["state"] = opt_state
        session.optimizer.load_state_dict(sd)
    return history


@dataclass
class TrainedModel(SoftmaxModel):
    """The model of a run folder: a ``SoftmaxModel`` with the run's config and folder, and how
    its training images were made from image files (``preprocessing``: invert, trim, size, for
    your own image data; None otherwise), which ``predict`` does to photos too."""

    config: TrainConfig | None = None
    run_dir: Path | None = None
    preprocessing: dict | None = None


def load_trained(run_dir: str | os.PathLike) -> TrainedModel:
    """Load the model of a run folder for evaluation or prediction (never runs code)."""
    run_dir = check_folder(run_dir)
    cfg = read_run_config(run_dir)
    path = run_dir / "model.safetensors"
    tensors, _ = read_tensors(path)
    ds = cfg["dataset"]
    shape, C = tuple(ds["image_shape"]), ds["num_classes"]
    W = check_tensor(path, tensors, "W", (ds["num_features"], C))
    b = check_tensor(path, tensors, "b", (C,))
    std = None
    if "standardize.mean" in tensors or "standardize.std" in tensors:
        mean = check_tensor(path, tensors, "standardize.mean", shape)
        spread = check_tensor(path, tensors, "standardize.std", shape)
        if not bool((spread > 0).all()):
            raise RunFolderError(f"{path}: standardize.std has values <= 0; the run folder is "
                                 "damaged")
        std = Standardizer(mean, spread)
    preprocessing = cfg.get("data", {}).get("image_preprocessing")
    if preprocessing is not None and not isinstance(preprocessing, dict):
        raise RunFolderError(f"{run_dir / 'config.json'}: data.image_preprocessing is not an "
                             "object; the run folder is damaged")
    return TrainedModel(W, b, std, tuple(ds["class_names"]), shape,
                        config=TrainConfig.from_dict(cfg["config"]), run_dir=run_dir,
                        preprocessing=preprocessing)
