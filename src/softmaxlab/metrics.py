"""Classification metrics on predictions and probabilities: pure functions of tensors.

- ``confusion_matrix``: counts (C, C), rows the true class, columns the predicted one (as
  ``sklearn.metrics.confusion_matrix``);
- ``per_class_accuracy``: the diagonal over the row sums (each class's recall);
- ``reliability_bins`` / ``expected_calibration_error``: calibration of the top probability.

Calibration (Guo et al., 2017): the confidence of a prediction is its largest probability. The
interval [0, 1] is cut into ``n_bins`` equal-width bins ``(k/n, (k+1)/n]`` (the first one also
holds 0); in each bin, a calibrated model's accuracy equals its mean confidence. The ECE is the
average gap ``|accuracy - confidence|`` over the bins, each weighted by its share of examples.

Inputs may be torch tensors or numpy arrays; results are torch tensors (or floats).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ECE_BINS = 15  # equal-width confidence bins of the expected calibration error
SUM_TOLERANCE = 1e-3  # how far a row of probabilities may sum from 1


def _labels(y, name: str) -> torch.Tensor:
    """``y`` as a 1-D int64 tensor; ValueError naming ``name`` if it is not integer class labels."""
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices (N,), got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    return t.to(torch.int64)


def _check_range(y: torch.Tensor, num_classes: int, name: str) -> None:
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ValueError(f"{name} holds {bad}, outside the classes 0..{num_classes - 1}")


def _probabilities(probs, y) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated (probs float64 (N, C), y int64 (N,)): rows are distributions, labels in range."""
    p = torch.as_tensor(np.asarray(probs) if not isinstance(probs, torch.Tensor) else probs)
    if p.ndim != 2 or not p.is_floating_point():
        raise ValueError(f"probs must be floats of shape (N, C), got {p.dtype} {tuple(p.shape)}")
    y = _labels(y, "y")
    if len(y) != len(p):
        raise ValueError(f"probs has {len(p)} rows but y has {len(y)} labels; give one per row")
    if len(p) == 0:
        raise ValueError("probs and y are empty; calibration needs at least one example")
    _check_range(y, p.shape[1], "y")
    p = p.detach()
    if not bool(torch.isfinite(p).all()) or float(p.min()) < 0 or float(p.max()) > 1:
        raise ValueError("probs must be finite and in [0, 1]; pass softmax(logits), not logits")
    sums = p.sum(1)
    worst = int((sums - 1).abs().argmax())
    if abs(float(sums[worst]) - 1) > SUM_TOLERANCE:
        raise ValueError(f"row {worst} of probs sums to {float(sums[worst]):.4g}, not 1; each row "
                         "must be a probability distribution (e.g. softmax(logits))")
    return p, y


def confusion_matrix(y_true, y_pred, num_classes: int) -> torch.Tensor:
    """y_true (N,), y_pred (N,) class indices -> counts int64 (C, C), [i, j] = #(true i, pred j)."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is not allowed; it must be an integer >= 1")
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}; give one "
                         "prediction per label")
    _check_range(y_true, num_classes, "y_true")
    _check_range(y_pred, num_classes, "y_pred")
    flat = torch.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Confusion matrix (C, C) -> each true class's accuracy (C,) float64, nan if it has none."""
    cm = torch.as_tensor(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square confusion matrix (C, C), got shape {tuple(cm.shape)}")
    cm = cm.to(torch.float64)
    return cm.diagonal() / cm.sum(1)


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin calibration of the top probability.

    edges (n_bins + 1,), count (n_bins,) int64, accuracy and confidence (n_bins,) float64 (the
    fraction correct and the mean top probability of the bin's examples; nan in an empty bin).
    """

    edges: torch.Tensor
    count: torch.Tensor
    accuracy: torch.Tensor
    confidence: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """The expected calibration error: sum over bins of count/n * |accuracy - confidence|."""
        full = self.count > 0
        gaps = (self.accuracy[full] - self.confidence[full]).abs()
        return float((self.count[full].to(torch.float64) / self.n * gaps).sum())


def reliability_bins(probs, y, n_bins: int = ECE_BINS) -> ReliabilityBins:
    """probs (N, C), y (N,) -> the ReliabilityBins of the max probability in ``n_bins`` bins."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r} is not allowed; it must be an integer >= 1")
    p, y = _probabilities(probs, y)
    conf, pred = p.max(1)
    correct = (pred == y).to(torch.float64)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    # bucketize (right=False) gives k for edges[k-1] < conf <= edges[k]: bin k is (k/n, (k+1)/n].
    # The edges are compared in the probabilities' own dtype, so a float32 0.6 counts as 0.6.
    idx = torch.bucketize(conf, edges[1:-1].to(conf.dtype), right=False)
    conf = conf.to(torch.float64)
    count = torch.bincount(idx, minlength=n_bins)
    accuracy = torch.bincount(idx, weights=correct, minlength=n_bins) / count  # 0/0 = nan
    confidence = torch.bincount(idx, weights=conf, minlength=n_bins) / count
    return ReliabilityBins(edges, count, accuracy, confidence)


def expected_calibration_error(probs, y, n_bins: int = ECE_BINS) -> float:
    """probs (N, C), y (N,) -> the ECE of the max probability over ``n_bins`` equal-width bins."""
    return reliability_bins(probs, y, n_bins).ece
