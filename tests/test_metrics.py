"""Tests for softmaxlab.metrics: scikit-learn as the oracle, and ECE examples done by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from softmaxlab.metrics import (
    confusion_matrix,
    expected_calibration_error,
    per_class_accuracy,
    reliability_bins,
)


def random_labels(n: int, C: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n,), generator=g)
    noise = torch.randint(0, C, (n,), generator=g)
    keep = torch.rand(n, generator=g) < 0.6
    return y, torch.where(keep, y, noise)


def random_probs(n: int, C: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(n, C, generator=g), dim=1)


def ece_by_loop(probs: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    """The ECE written out example by example: bin k holds confidences in (k/n, (k+1)/n]."""
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(n_bins)]
    for p, label in zip(probs, y):
        conf, pred = float(p.max()), int(p.argmax())
        k = max(0, int(np.ceil(conf * n_bins)) - 1)
        bins[k].append((conf, pred == label))
    total = 0.0
    for members in bins:
        if members:
            acc = sum(c for _, c in members) / len(members)
            conf = sum(c for c, _ in members) / len(members)
            total += len(members) / len(y) * abs(acc - conf)
    return total


# --------------------------------------------------------------------------- confusion matrix


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_sklearn(seed):
    y, pred = random_labels(500, 7, seed)
    cm = confusion_matrix(y, pred, 7)
    expected = skm.confusion_matrix(y.numpy(), pred.numpy(), labels=list(range(7)))
    assert cm.dtype == torch.int64
    np.testing.assert_array_equal(cm.numpy(), expected)
    assert float(cm.diagonal().sum()) / len(y) == pytest.approx(
        skm.accuracy_score(y.numpy(), pred.numpy()))


def test_confusion_matrix_counts_classes_that_never_occur():
    y = np.array([0, 0, 2, 2, 2])
    pred = np.array([0, 2, 2, 2, 0])
    cm = confusion_matrix(y, pred, 4)  # numpy in, classes 1 and 3 absent
    np.testing.assert_array_equal(cm.numpy(), skm.confusion_matrix(y, pred, labels=[0, 1, 2, 3]))


def test_per_class_accuracy_is_recall_and_nan_for_absent_classes():
    y, pred = random_labels(400, 5, 3)
    y[y == 4] = 0  # class 4 never occurs
    acc = per_class_accuracy(confusion_matrix(y, pred, 5))
    recall = skm.recall_score(y.numpy(), pred.numpy(), labels=[0, 1, 2, 3], average=None,
                              zero_division=0)
    np.testing.assert_allclose(acc[:4].numpy(), recall)
    assert torch.isnan(acc[4])


@pytest.mark.parametrize(
    ("y_true", "y_pred", "C", "message"),
    [
        ([0, 1], [0], 2, "y_true has 2 labels but y_pred has 1"),
        ([0, 3], [0, 1], 3, "y_true holds 3, outside the classes 0..2"),
        ([0, 1], [0, -1], 3, "y_pred holds -1"),
        ([0.0, 1.0], [0, 1], 2, "integer class indices"),
        ([[0, 1]], [[0, 1]], 2, "1-D class indices"),
        ([0, 1], [0, 1], 0, "num_classes=0 is not allowed"),
    ],
)
def test_confusion_matrix_rejects_bad_input(y_true, y_pred, C, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(np.array(y_true), np.array(y_pred), C)


# --------------------------------------------------------------------------- calibration


def test_ece_of_a_hand_computed_example_with_15_bins():
    # conf 0.95 (bin (14/15, 1]) right and wrong: accuracy 0.5, confidence 0.95, gap 0.45;
    # conf 0.5 (bin (7/15, 8/15]) right and wrong: accuracy 0.5, confidence 0.5, gap 0.
    # ECE = 2/4 * 0.45 + 2/4 * 0 = 0.225
    probs = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.5, 0.5], [0.5, 0.5]])
    y = torch.tensor([0, 1, 0, 1])
    assert expected_calibration_error(probs, y) == pytest.approx(0.225, abs=1e-6)
    bins = reliability_bins(probs, y)
    assert len(bins.count) == 15
    assert bins.count[14] == 2 and bins.count[7] == 2 and int(bins.count.sum()) == 4
    assert float(bins.accuracy[14]) == pytest.approx(0.5)
    assert float(bins.confidence[14]) == pytest.approx(0.95)
    assert torch.isnan(bins.accuracy[0]) and torch.isnan(bins.confidence[0])


def test_ece_of_a_hand_computed_example_with_5_bins_and_an_edge():
    # conf 0.9 right -> (0.8, 1]: gap 0.1; conf 0.7 right -> (0.6, 0.8]: gap 0.3;
    # conf 0.6 wrong and 0.5 right -> (0.4, 0.6] (0.6 is the upper edge, inside): accuracy 0.5,
    # confidence 0.55, gap 0.05. ECE = 0.1/4 + 0.3/4 + 2 * 0.05/4 = 0.125
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    y = torch.tensor([0, 1, 1, 0])
    bins = reliability_bins(probs, y, n_bins=5)
    assert bins.count.tolist() == [0, 0, 2, 1, 1]
    assert bins.ece == pytest.approx(0.125, abs=1e-6)
    np.testing.assert_allclose(bins.edges.numpy(), [0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_ece_is_zero_when_confident_and_right():
    probs = torch.eye(4)[[0, 1, 2, 3, 1]]
    assert expected_calibration_error(probs, torch.tensor([0, 1, 2, 3, 1])) == 0.0


@pytest.mark.parametrize(("seed", "n_bins"), [(0, 15), (1, 10), (2, 1)])
def test_ece_matches_a_loop_over_examples(seed, n_bins):
    probs = random_probs(300, 6, seed).double()
    y, _ = random_labels(300, 6, seed + 10)
    expected = ece_by_loop(probs.numpy(), y.numpy(), n_bins)
    assert expected_calibration_error(probs.numpy(), y.numpy(), n_bins) == pytest.approx(expected)


def test_reliability_accuracy_weighted_by_counts_is_the_accuracy():
    probs = random_probs(1000, 10, 5)
    y, _ = random_labels(1000, 10, 6)
    bins = reliability_bins(probs, y)
    full = bins.count > 0
    acc = float((bins.accuracy[full] * bins.count[full]).sum() / bins.n)
    assert acc == pytest.approx(float((probs.argmax(1) == y).double().mean()))
    assert bins.n == 1000


@pytest.mark.parametrize(
    ("probs", "y", "n_bins", "message"),
    [
        (torch.tensor([[2.0, -1.0]]), torch.tensor([0]), 15, "pass softmax"),
        (torch.tensor([[0.5, 0.2]]), torch.tensor([0]), 15, "row 0 of probs sums to 0.7"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1]), 15, "probs has 1 rows but y has 2"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([2]), 15, "y holds 2"),
        (torch.tensor([0.5, 0.5]), torch.tensor([0]), 15, r"shape \(N, C\)"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), 15, "at least one example"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0]), 0, "n_bins=0 is not allowed"),
    ],
)
def test_calibration_rejects_bad_input(probs, y, n_bins, message):
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(probs, y, n_bins)
