"""The files of a run folder: save after every epoch, load to resume or to use the model.

A run folder holds
- ``config.json``: the training options, the dataset's facts (class names, image shape) and the
  package version: everything needed to rebuild the model and its preprocessing;
- ``model.safetensors``: ``W`` (D, C) and ``b`` (C,) (the concise model's weight transposed, so
  both impls share one format) and, with ``--standardize``, ``standardize.mean`` / ``.std``;
- ``optimizer.safetensors`` + ``state.json``: the optimiser's tensors and the rest of its state,
  and the epoch count; the shuffles derive from (seed, epoch), so nothing else is needed to resume;
- ``history.json``: one object per epoch.

This module is the only one that reads or writes these files. Every file is written to a temp
file and renamed; the checkpoint's files are also synced to the disk (``fsutil``, durable). No
pickle is ever read. ``model.safetensors``, ``optimizer.safetensors`` and ``state.json`` all carry
the epoch count, so a run interrupted while saving is detected instead of resumed from mixed
epochs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .config import TrainConfig
from .errors import RunFolderError
from .fsutil import atomic_path, read_json, write_json
from .models import SoftmaxModel, set_weights, weights
from .preprocess import Standardizer

if TYPE_CHECKING:
    from .runner import Session

FORMAT = "softmaxlab-run-1"
RUN_FILES = ("config.json", "model.safetensors", "optimizer.safetensors", "state.json",
             "history.json")


RunError = RunFolderError  # the name it had before softmaxlab.errors


# ---------------------------------------------------------------------------- saving


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    with atomic_path(path, durable=True) as tmp:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)


def _encode(obj, prefix: str, tensors: dict[str, torch.Tensor]):
    """Nested optimizer state -> JSON-able structure; tensors go to ``tensors`` by key."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _encode(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _decode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, dict) and "__tensor__" in obj:
        # a fresh (aligned) copy: vector kernels may sum in another order on the loaded buffer's
        # alignment, and resuming must give bit-identical results
        return tensors[obj["__tensor__"]].clone()
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def model_tensors(session_model, standardizer: Standardizer | None) -> dict[str, torch.Tensor]:
    W, b = weights(session_model)
    tensors = {"W": W, "b": b}
    if standardizer is not None:
        tensors["standardize.mean"] = standardizer.mean
        tensors["standardize.std"] = standardizer.std
    return tensors


def write_config(run_dir: Path, session: Session, data_dir: str | None = None) -> None:
    ds = session.train
    write_json(run_dir / "config.json", {
        "format": FORMAT,
        "version": __version__,
        "config": session.config.to_dict(),
        "dataset": {"name": session.config.dataset, "class_names": list(ds.class_names),
                    "image_shape": list(ds.image_shape), "num_features": ds.num_features,
                    "num_classes": ds.num_classes, "train_size": len(ds),
                    "val_size": 0 if session.val is None else len(session.val),
                    "test_size": len(session.test)},
        # absolute, so `evaluate` / `--resume` find the data from any working folder
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
    })


def save_checkpoint(run_dir: str | os.PathLike, session: Session, history: list[dict]) -> None:
    """Write model, optimiser state, history and state of ``session`` after ``len(history)`` epochs."""
    run_dir = Path(run_dir)
    epoch = str(len(history))
    meta = {"format": FORMAT, "epoch": epoch, "impl": session.config.impl}
    _save_tensors(run_dir / "model.safetensors", model_tensors(session.model, session.standardizer),
                  meta)
    tensors: dict[str, torch.Tensor] = {}
    opt_state = _encode(session.optimizer.state_dict()["state"], "state", tensors)
    _save_tensors(run_dir / "optimizer.safetensors", tensors, meta)
    write_history(run_dir, history)
    write_json(run_dir / "state.json", {"format": FORMAT, "epoch": len(history),
                                        "rng": {"seed": session.config.seed,
                                                "next_epoch": len(history)},
                                        "optimizer_state": opt_state}, durable=True)


def write_history(run_dir: str | os.PathLike, history: list[dict]) -> Path:
    """Write ``run_dir/history.json``: one object per epoch."""
    return write_json(Path(run_dir) / "history.json", history, durable=True)


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The run's history.json: one dict per epoch (epoch, train_loss, train_acc, test_acc, ...)."""
    path = Path(run_dir) / "history.json"
    history = _read(path)
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise RunError(f"{path} is not a list of per-epoch records; the run folder is damaged")
    return history


# ---------------------------------------------------------------------------- loading


def _read(path: Path):
    if not path.is_file():
        raise RunError(f"{path} is missing: {path.parent} is not a complete softmaxlab run folder")
    try:
        if path.suffix == ".json":
            return read_json(path)
        return load_file(path), _metadata(path)
    except (json.JSONDecodeError, SafetensorError, OSError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is unreadable ({e}); the run folder is damaged") from None


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return f.metadata() or {}


def read_run_config(run_dir: str | os.PathLike) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a folder; give the run folder that `softmaxlab train` "
                       "wrote (it holds config.json and model.safetensors)")
    cfg = _read(run_dir / "config.json")
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise RunError(f"{run_dir / 'config.json'} is not a {FORMAT} run config")
    return cfg


def restore_session(run_dir: str | os.PathLike, session: Session) -> list[dict]:
    """Load model, optimiser state and history of ``run_dir`` into ``session``; the history."""
    run_dir = Path(run_dir)
    history = read_history(run_dir)
    state = _read(run_dir / "state.json")
    model, model_meta = _read(run_dir / "model.safetensors")
    opt, opt_meta = _read(run_dir / "optimizer.safetensors")
    epochs = {len(history), state.get("epoch"), int(model_meta.get("epoch", -1)),
              int(opt_meta.get("epoch", -1))}
    if len(epochs) != 1:
        raise RunError(f"{run_dir}: the saved files are from different epochs ({sorted(epochs)}); "
                       "the run was interrupted while saving and cannot be resumed exactly")
    set_weights(session.model, model["W"], model["b"])
    if state.get("optimizer_state") is not None:
        sd = session.optimizer.state_dict()
        sd["state"] = _decode(state["optimizer_state"], opt)
        session.optimizer.load_state_dict(sd)
    return history


@dataclass
class TrainedModel(SoftmaxModel):
    """The model of a run folder: a ``SoftmaxModel`` with the run's config and folder."""

    config: TrainConfig | None = None
    run_dir: Path | None = None


def load_trained(run_dir: str | os.PathLike) -> TrainedModel:
    """Load the model of a run folder for evaluation or prediction (never runs code)."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    tensors, _ = _read(run_dir / "model.safetensors")
    ds = cfg["dataset"]
    W, b = tensors.get("W"), tensors.get("b")
    D, C = ds["num_features"], ds["num_classes"]
    if W is None or b is None or tuple(W.shape) != (D, C) or tuple(b.shape) != (C,):
        raise RunError(f"{run_dir / 'model.safetensors'}: expected W ({D}, {C}) and b ({C},)")
    std = None
    if "standardize.mean" in tensors:
        std = Standardizer(tensors["standardize.mean"], tensors["standardize.std"])
    return TrainedModel(W, b, std, tuple(ds["class_names"]), tuple(ds["image_shape"]),
                        config=TrainConfig.from_dict(cfg["config"]), run_dir=run_dir)
