"""d2l-zh 2.0 (d2l 0.17) chapter 3, "linear networks": the functions its sections take from d2l.

The chapter's training loop is softmaxlab's plain one (``softmaxlab.train``); ``train_ch3`` keeps
the chapter's asserts and plots with the ``Animator``, and this module keeps the chapter's prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np
import torch

from .. import functional as F
from .. import plots
from .. import train as _train
from ..errors import ConfigError
from ..train import Accumulator, accuracy, sgd
from .data import get_fashion_mnist_labels
from .devices import training_threads
from .figures import Animator, publish

__all__ = ["Accumulator", "Timer", "accuracy", "cross_entropy", "evaluate_accuracy", "linreg",
           "predict_ch3", "sgd", "softmax", "squared_loss", "train_ch3", "train_epoch_ch3"]


class Timer:
    """A stopwatch that records several runs: start(), stop() -> seconds, avg(), sum(), cumsum()."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.start()

    def start(self) -> None:
        self.tik = time.perf_counter()

    def stop(self) -> float:
        """Record and return the seconds since the last start()."""
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self) -> float:
        return sum(self.times) / len(self.times)

    def sum(self) -> float:
        return sum(self.times)

    def cumsum(self) -> list[float]:
        return np.array(self.times).cumsum().tolist()


# --------------------------------------------------------------------------- linear regression


def linreg(X, w, b):
    """The linear regression model X w + b: X (N, D), w (D, 1) -> (N, 1)."""
    return torch.matmul(X, w) + b


def squared_loss(y_hat, y):
    """(y_hat - y)^2 / 2 per example, y reshaped to y_hat's shape."""
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2


# --------------------------------------------------------------------------- softmax regression


def softmax(X: torch.Tensor) -> torch.Tensor:
    """The chapter's softmax, exp / row sum: X (N, C) -> (N, C). nan once a score reaches ~89."""
    return F.naive_softmax(X)


def cross_entropy(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The chapter's -log(y_hat[range(N), y]): probabilities (N, C), labels (N,) -> losses (N,)."""
    return F.cross_entropy_from_probs(y_hat, y)


def evaluate_accuracy(net, data_iter) -> float:
    """Fraction of the examples of ``data_iter`` that ``net`` classifies right (eval mode)."""
    return _train.evaluate_accuracy(net, data_iter)


def train_epoch_ch3(net, train_iter: Iterable, loss: Callable, updater: _train.Updater):
    """One epoch of the chapter's loop; returns (mean training loss, training accuracy).

    net: an nn.Module or a function X -> (N, C) scores or probabilities; loss(y_hat, y) -> (N,)
    per-example losses; updater: a torch.optim.Optimizer (it steps on the mean loss) or
    ``updater(batch_size)`` (called after the summed loss's backward, as with ``d2l.sgd``).
    """
    return _train.train_epoch(net, train_iter, loss, updater)


def train_ch3(net, train_iter, test_iter, loss, num_epochs, updater) -> None:
    """Train ``num_epochs`` epochs, plotting train loss, train acc and test acc after each.

    Ends with the chapter's checks: train loss < 0.5 and both accuracies in (0.7, 1]. After 10
    epochs at lr 0.1 they hold; fewer than about 5 epochs fail the train-loss one. Trains with
    ``devices.TRAINING_THREADS`` torch threads (one), as ``Trainer.fit`` does.
    """
    if num_epochs < 1:
        raise ConfigError(f"num_epochs={num_epochs!r} is not allowed; it must be >= 1")
    animator = Animator(xlabel="epoch", xlim=[1, num_epochs], ylim=[0.3, 0.9],
                        legend=["train loss", "train acc", "test acc"])
    with training_threads():
        for epoch in range(num_epochs):
            train_metrics = train_epoch_ch3(net, train_iter, loss, updater)
            test_acc = evaluate_accuracy(net, test_iter)
            animator.add(epoch + 1, (*train_metrics, test_acc))
    animator.flush()
    train_loss, train_acc = train_metrics
    assert train_loss < 0.5, f"train_loss={train_loss}"
    assert train_acc <= 1 and train_acc > 0.7, f"train_acc={train_acc}"
    assert test_acc <= 1 and test_acc > 0.7, f"test_acc={test_acc}"


def predict_ch3(net, test_iter, n=6) -> None:
    """The first ``n`` images of the first test batch, titled "true\\npredicted" (wrong in red).

    Outside Jupyter the figure is also saved to predict_ch3.png.
    """
    X, y = next(iter(test_iter))
    with torch.no_grad():
        preds = net(X).argmax(dim=1)
    trues, guesses = get_fashion_mnist_labels(y[:n]), get_fashion_mnist_labels(preds[:n])
    titles = [true + "\n" + pred for true, pred in zip(trues, guesses)]
    axes = plots.show_images(X[:n, 0], 1, n, titles=titles)
    for ax, true, pred in zip(axes, trues, guesses):
        if true != pred:
            ax.title.set_color("red")
    publish(axes[0].figure, "predict_ch3.png", "predict_ch3")
