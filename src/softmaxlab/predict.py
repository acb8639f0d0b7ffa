"""Classify image files of your own with a trained model: files in, top-k classes out.

Each file goes through :func:`softmaxlab.images.load_image` (orientation, grayscale, inversion,
trimming, scaling to the model's image size, centring on black), then all readable files are
classified together in one forward pass of :meth:`TrainedModel.predict_proba`, which applies the
model's own saved preprocessing (standardisation). A file that cannot be read gets an error in
its result instead of stopping the others.

:func:`save_inputs` writes the images the model saw, so you can check what it was shown.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoint import TrainedModel
from .errors import ConfigError, ImageInputError
from .fsutil import atomic_path
from .images import INVERT_CHOICES, load_image, to_tensor

__all__ = ["ClassScore", "FilePrediction", "predict_files", "save_inputs"]


@dataclass(frozen=True)
class ClassScore:
    """One class of a top-k list: its index in the model's classes, its name, its probability."""

    index: int
    label: str
    probability: float


@dataclass(frozen=True, eq=False)  # eq=False: ``image`` is an array, == would be ambiguous
class FilePrediction:
    """The result for one file: the top-k classes, or the reason the file could not be used.

    ``image`` is the uint8 ``(H, W)`` array the model saw (light object on black), ``None`` for a
    file that failed.
    """

    file: str
    top: tuple[ClassScore, ...] = ()
    image: np.ndarray | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        """``{"file", "top": [{"index", "label", "probability"}, ...]}`` or ``{"file", "error"}``."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "top": [{"index": s.index, "label": s.label,
                                            "probability": s.probability} for s in self.top]}


def _input_size(model: TrainedModel) -> int:
    height, width = model.image_shape
    if height != width:
        raise ConfigError(f"the model takes {height}x{width} images; predicting from files "
                         "needs a model trained on square images")
    return int(height)


def predict_files(
    model: TrainedModel,
    files: Sequence[str | os.PathLike],
    top_k: int = 3,
    invert: str = "auto",
    trim: bool = True,
) -> list[FilePrediction]:
    """Classify image files; one result per file, in the order given.

    The readable files are stacked into one ``(N, 1, H, W)`` batch with ``(H, W)`` the model's
    image shape and classified in a single forward pass.

    Args:
        model: a trained model (:func:`softmaxlab.checkpoint.load_trained`).
        files: image files in any format Pillow reads.
        top_k: how many classes to return per file, most probable first; 1 to the number of
            classes.
        invert: passed to :func:`~softmaxlab.images.load_image`: ``"auto"``, ``"always"`` or
            ``"never"``.
        trim: crop each image to its object before scaling (see ``load_image``).

    Returns:
        A :class:`FilePrediction` per file; a file that is missing, empty, too large, not an
        image or over Pillow's pixel limit has ``error`` set (a one-line message) and no ``top``.

    Raises:
        ConfigError: ``top_k`` or ``invert`` is out of range, or the model's images are not square.
    """
    num_classes = len(model.class_names)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_classes:
        raise ConfigError(f"top_k={top_k!r} is not allowed; it must be an integer from 1 to "
                         f"{num_classes} (the model's number of classes)")
    if invert not in INVERT_CHOICES:
        raise ConfigError(f"invert={invert!r} is not allowed; use one of {', '.join(INVERT_CHOICES)}")
    size = _input_size(model)

    images: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    for i, path in enumerate(files):
        try:
            images[i] = load_image(path, invert=invert, trim=trim, size=size)
        except ImageInputError as e:
            errors[i] = str(e)

    tops: dict[int, tuple[ClassScore, ...]] = {}
    if images:
        order = list(images)
        proba = model.predict_proba(to_tensor([images[i] for i in order]))  # (N, C)
        values, indices = torch.topk(proba, top_k, dim=1)  # (N, k), sorted descending
        for row, i in enumerate(order):
            tops[i] = tuple(ClassScore(int(c), model.class_names[int(c)], float(p))
                            for p, c in zip(values[row].tolist(), indices[row].tolist()))

    return [FilePrediction(os.fspath(path), tops.get(i, ()), images.get(i), errors.get(i))
            for i, path in enumerate(files)]


def _input_names(predictions: Sequence[FilePrediction]) -> list[str]:
    """``<stem>.png`` per successful prediction, ``<stem>-2.png``, ... where stems repeat."""
    names: list[str] = []
    taken: set[str] = set()
    for p in predictions:
        if not p.ok:
            continue
        stem = Path(p.file).stem or "image"
        name, n = f"{stem}.png", 1
        while name.casefold() in taken:  # casefold: also unique on case-insensitive disks
            n += 1
            name = f"{stem}-{n}.png"
        taken.add(name.casefold())
        names.append(name)
    return names


def save_inputs(predictions: Sequence[FilePrediction], out_dir: str | os.PathLike) -> list[Path]:
    """Write the image the model saw for each successful prediction as a grayscale PNG.

    Each file is named after its input (``photo.jpg`` -> ``photo.png``; repeated names get
    ``-2``, ``-3``, ...), written atomically into ``out_dir``, which is created if needed.

    Returns:
        The paths written, in the order of the successful predictions.

    Raises:
        ConfigError: ``out_dir`` exists and is not a folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder; give a folder to write the "
                                 "model's input images into")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p, name in zip([p for p in predictions if p.ok], _input_names(predictions)):
        path = out / name
        with atomic_path(path) as tmp:
            Image.fromarray(p.image).save(tmp, format="PNG")
        written.append(path)
    return written
