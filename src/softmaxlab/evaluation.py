"""Evaluate a trained model on a test split: metrics, calibration, the figures, ``eval/`` files.

``evaluate(model, test)`` runs the model once over the test images and returns an ``Evaluation``;
``write_evaluation(run_dir, ev)`` writes ``run_dir/eval/`` (metrics.json and three PNGs). The
HTML report (``softmaxlab.report``) embeds the same ``evaluation_figures``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import TrainedModel
from .data import ImageDataset, text_labels
from .errors import DataError
from .fsutil import write_json
from .metrics import (
    ECE_BINS,
    ReliabilityBins,
    confusion_matrix,
    per_class_accuracy,
    reliability_bins,
)
from .runfolder import EVAL_DIR  # the folder of a run that `softmaxlab evaluate` writes into

N_MISTAKES = 16  # most confidently wrong test images shown
BATCH_SIZE = 10000  # test images per forward pass
MSE_NOTE = ("this model was trained with the squared loss on its raw scores, so its softmax "
            "probabilities are not calibrated by training: read the confidence and the ECE as "
            "a property of softmax(o), not as probabilities the model learned")
# file name -> key of evaluation_figures
FIGURE_FILES = {"confusion_matrix.png": "confusion_matrix", "reliability.png": "reliability",
                "mistakes.png": "mistakes"}
FIGURE_KEYS = tuple(FIGURE_FILES.values())


@dataclass(frozen=True)
class Evaluation:
    """A model's predictions on a test split and the metrics computed from them.

    probs (N, C) float32, labels / pred (N,) int64, images (N, H, W) uint8, confusion (C, C)
    int64, per_class (C,) float64 (nan for a class without examples).
    """

    probs: torch.Tensor
    labels: torch.Tensor
    pred: torch.Tensor
    images: torch.Tensor
    class_names: tuple[str, ...]
    loss: str  # the training loss, "ce" or "mse"
    dataset: str
    confusion: torch.Tensor
    per_class: torch.Tensor
    bins: ReliabilityBins

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def accuracy(self) -> float:
        return float(self.confusion.diagonal().sum()) / self.n

    @property
    def ece(self) -> float:
        return self.bins.ece

    @property
    def mean_confidence(self) -> float:
        """The mean of the largest probability over the examples."""
        return float(self.probs.max(1).values.double().mean())

    @property
    def note(self) -> str | None:
        """A warning about what the probabilities mean, or None."""
        return MSE_NOTE if self.loss == "mse" else None

    def most_confident_mistakes(self, k: int = N_MISTAKES) -> torch.Tensor:
        """Indices (<= k,) of the wrong predictions with the largest top probability, largest first."""
        wrong = (self.pred != self.labels).nonzero().squeeze(1)
        conf = self.probs[wrong].max(1).values
        order = torch.sort(conf, descending=True, stable=True).indices[:k]
        return wrong[order]

    def per_class_rows(self) -> list[dict]:
        """One row per class: name, n, correct, accuracy (None if n == 0), and the class it is
        most often mistaken for (confused_with, confused_share of the class, or None)."""
        rows = []
        for i, name in enumerate(self.class_names):
            counts = self.confusion[i].clone()
            n, correct = int(counts.sum()), int(counts[i])
            counts[i] = -1
            j = int(counts.argmax())
            other = int(counts[j]) > 0
            rows.append({"class": name, "n": n, "correct": correct,
                         "accuracy": correct / n if n else None,
                         "confused_with": self.class_names[j] if other else None,
                         "confused_share": int(counts[j]) / n if other else None})
        return rows

    def to_json(self) -> dict:
        """The metrics as a JSON-able dict (metrics.json); nan becomes None."""
        b = self.bins
        return {
            "dataset": self.dataset,
            "split": "test",
            "n": self.n,
            "accuracy": self.accuracy,
            "expected_calibration_error": self.ece,
            "ece_bins": len(b.count),
            "mean_confidence": self.mean_confidence,
            "per_class_accuracy": {name: _number(a)
                                   for name, a in zip(self.class_names, self.per_class.tolist())},
            "class_names": list(self.class_names),
            "confusion_matrix": self.confusion.tolist(),
            "confusion_matrix_axes": "rows: true class, columns: predicted class",
            "reliability": {"bin_edges": b.edges.tolist(), "count": b.count.tolist(),
                            "accuracy": [_number(v) for v in b.accuracy.tolist()],
                            "mean_confidence": [_number(v) for v in b.confidence.tolist()]},
            "training_loss": self.loss,
            "note": self.note,
        }


def _number(v: float) -> float | None:
    return None if math.isnan(v) else v


def predict_proba(model: TrainedModel, test: ImageDataset, batch_size: int = BATCH_SIZE
                  ) -> torch.Tensor:
    """The model's probabilities (N, C) float32 on every image of ``test``."""
    return torch.cat([model.predict_proba(X) for X, _ in test.batches(batch_size)])


def check_compatible(model: TrainedModel, test: ImageDataset) -> None:
    """Raise DataError if ``test`` is not data of the kind ``model`` was trained on."""
    if tuple(test.image_shape) != tuple(model.image_shape) or \
            tuple(test.class_names) != tuple(model.class_names):
        raise DataError(
            f"the test data ({test.name or 'unnamed'}: {len(test.class_names)} classes, images "
            f"{test.image_shape}) does not match the model of {model.run_dir} "
            f"({len(model.class_names)} classes, images {tuple(model.image_shape)}); evaluate it on "
            "the dataset it was trained on")


def evaluate(model: TrainedModel, test: ImageDataset, n_bins: int = ECE_BINS) -> Evaluation:
    """Run ``model`` over ``test`` (images (N, H, W)) once and compute every metric."""
    check_compatible(model, test)
    probs = predict_proba(model, test)
    pred = probs.argmax(1)
    cm = confusion_matrix(test.labels, pred, len(model.class_names))
    return Evaluation(probs=probs, labels=test.labels, pred=pred, images=test.images,
                      class_names=tuple(model.class_names), loss=model.config.loss,
                      dataset=model.config.dataset, confusion=cm,
                      per_class=per_class_accuracy(cm),
                      bins=reliability_bins(probs, test.labels, n_bins))


def evaluation_figures(ev: Evaluation, include: Sequence[str] = FIGURE_KEYS) -> dict[str, object]:
    """The evaluation's Figures named in ``include``: confusion_matrix, reliability and mistakes
    (None if there are none)."""
    from . import plots

    b = ev.bins
    figures: dict[str, object] = {}
    if "confusion_matrix" in include:
        figures["confusion_matrix"] = plots.plot_confusion_matrix(
            ev.confusion, ev.class_names,
            f"{ev.dataset} test: confusion matrix ({ev.n} images, accuracy {ev.accuracy:.4f})")
    if "reliability" in include:
        figures["reliability"] = plots.plot_reliability_diagram(
            b.edges, b.count, b.accuracy, b.confidence, ev.ece,
            "reliability diagram (softmax of the squared-loss scores)" if ev.loss == "mse"
            else None)
    if "mistakes" not in include:
        return figures
    figures["mistakes"] = None
    idx = ev.most_confident_mistakes()
    if len(idx):
        names = ev.class_names
        figures["mistakes"] = plots.plot_mistakes(
            ev.images[idx], text_labels(ev.labels[idx], names), text_labels(ev.pred[idx], names),
            ev.probs[idx].max(1).values.tolist())
    return figures


def write_evaluation(run_dir: str | os.PathLike, ev: Evaluation) -> list[Path]:
    """Write ``run_dir/eval/``: metrics.json and the figures' PNGs; returns the paths written."""
    from . import plots

    out = Path(run_dir) / EVAL_DIR
    written = [write_json(out / "metrics.json", ev.to_json())]
    figures = evaluation_figures(ev)
    for file, key in FIGURE_FILES.items():
        if figures[key] is not None:
            written.append(plots.save_figure(figures[key], out / file))
        elif (out / file).exists():
            (out / file).unlink()  # a stale picture of an earlier evaluation
    return written
