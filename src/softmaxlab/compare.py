"""Comparing losses, the library side of ``softmaxlab losses`` and ``softmaxlab compare-losses``.

``loss_curves`` gives the lecture's picture data: L2, L1 and Huber with the target fixed while the
prediction varies, each with its gradient and likelihood ``exp(-l)``, computed with
``softmaxlab.functional``'s losses and their ``_grad`` twins. ``compare_losses`` trains the
from-scratch softmax regression once per classification loss from the same start (same seed:
same initial W, same shuffles), each at its own default learning rate, and returns the histories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from . import functional as F
from .data import ImageDataset
from .errors import ConfigError
from .runner import Session, TrainConfig
from .train import LOSSES

CURVE_POINTS = 601  # points per curve: a step of 0.01 on [-3, 3]


@dataclass(frozen=True)
class LossCurve:
    """One pointwise loss against the prediction: x, loss, grad, likelihood are (n,) float64."""

    name: str  # e.g. "Huber loss (δ = 1)"
    formula: str  # matplotlib mathtext, e.g. r"$l = |y - y'|$"
    target: float  # the fixed target y
    x: torch.Tensor  # the predictions y'
    loss: torch.Tensor  # l(y', y)
    grad: torch.Tensor  # dl/dy'
    likelihood: torch.Tensor  # exp(-l)
    kinks: tuple[float, ...]  # predictions where the loss is not twice differentiable
    distribution: str  # what exp(-l) is, up to normalisation


def loss_curves(delta: float = 1.0, y: float = 0.0, lo: float = -3.0, hi: float = 3.0,
                n: int = CURVE_POINTS) -> list[LossCurve]:
    """L2, L1 and Huber(delta) for predictions y' in [lo, hi] and target y.

    Returns three LossCurves whose tensors are (m,): n evenly spaced points plus the kinks (y for
    L1, y ± delta for Huber) that fall between them, so the value at each kink is drawn. Raises
    ValueError for delta <= 0, lo >= hi or n < 2.
    """
    if not lo < hi:
        raise ConfigError(f"the range [{lo}, {hi}] is empty; give lo < hi")
    if n < 2:
        raise ConfigError(f"n={n} is not allowed; a curve needs n >= 2 points")
    grid = torch.linspace(lo, hi, n, dtype=torch.float64)

    def curve(name, formula, loss_fn, grad_fn, kinks, distribution):
        x = torch.cat([grid, torch.tensor([k for k in kinks if lo < k < hi],
                                          dtype=torch.float64)]).unique()  # sorted
        target = torch.full_like(x, y)
        loss = loss_fn(x, target)
        return LossCurve(name, formula, y, x, loss, grad_fn(x, target), torch.exp(-loss),
                         kinks, distribution)

    return [
        curve("L2 loss", r"$l = \frac{1}{2}(y - y')^2$",
              lambda a, b: F.l2_loss(a, b, reduction="none"), F.l2_loss_grad, (), "Gaussian"),
        curve("L1 loss", r"$l = |y - y'|$",
              lambda a, b: F.l1_loss(a, b, reduction="none"), F.l1_loss_grad, (y,), "Laplace"),
        curve(f"Huber loss (δ = {delta:g})",
              r"$l = \frac{1}{2}(y - y')^2$ if $|y - y'| \leq \delta$," "\n"
              r"else $\delta\,(|y - y'| - \frac{1}{2}\delta)$",
              lambda a, b: F.huber_loss(a, b, delta, reduction="none"),
              lambda a, b: F.huber_loss_grad(a, b, delta), (y - delta, y + delta),
              "Gaussian core, Laplace tails"),
    ]


@dataclass
class LossRun:
    """One loss's training run: its config (loss, learning rate, ...) and history rows."""

    config: TrainConfig
    history: list[dict]

    @property
    def loss(self) -> str:
        return self.config.loss

    @property
    def lr(self) -> float:
        return self.config.learning_rate

    def to_dict(self) -> dict:
        return {"lr": self.lr, "config": self.config.to_dict(), "history": self.history}


def loss_configs(losses: Sequence[str] = tuple(LOSSES), epochs: int = 10, batch_size: int = 256,
                 seed: int = 0, dataset: str = "fashion-mnist") -> list[TrainConfig]:
    """One from-scratch TrainConfig per loss, alike but for the loss and its default lr."""
    if not losses:
        raise ConfigError(f"no loss to compare; give some of {', '.join(LOSSES)}")
    if len(set(losses)) != len(losses):
        raise ConfigError(f"losses={list(losses)} names a loss twice; give each once")
    return [TrainConfig(impl="scratch", loss=name, epochs=epochs, batch_size=batch_size,
                        seed=seed, dataset=dataset) for name in losses]


def compare_losses(
    train: ImageDataset,
    test: ImageDataset,
    configs: Sequence[TrainConfig],
    on_epoch: Callable[[str, list[dict]], None] | None = None,
    wrap: Callable[[Iterable, int], Iterable] | None = None,
) -> list[LossRun]:
    """Train one Session per config (see ``loss_configs``) on ``train``, evaluate on ``test``.

    ``on_epoch(loss_name, history)`` is called after each epoch; ``wrap`` wraps the batches (a
    progress bar). Returns the runs in the order of ``configs``.
    """
    runs = []
    for config in configs:
        callbacks = [lambda h, name=config.loss: on_epoch(name, h)] if on_epoch else []
        history = Session(config, train, test).fit(callbacks=callbacks, wrap=wrap)
        runs.append(LossRun(config, history))
    return runs


def summary_rows(runs: Sequence[LossRun]) -> list[dict]:
    """The last epoch of each run: loss, lr, epochs, train_loss, train_acc, test_acc."""
    rows = []
    for run in runs:
        if not run.history:
            raise ConfigError(f"the {run.loss} run has no epoch to summarise; train >= 1 epoch")
        last = run.history[-1]
        rows.append({"loss": run.loss, "lr": run.lr, "epochs": last["epoch"],
                     "train_loss": last["train_loss"], "train_acc": last["train_acc"],
                     "test_acc": last["test_acc"]})
    return rows


def summary_markdown(runs: Sequence[LossRun]) -> str:
    """A Markdown table of ``summary_rows`` with a note on the losses' scales."""
    lines = ["| loss | lr | epochs | final train loss | train acc | test acc |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in summary_rows(runs):
        lines.append(f"| {r['loss']} | {r['lr']:g} | {r['epochs']} | {r['train_loss']:.4f} | "
                     f"{r['train_acc']:.4f} | {r['test_acc']:.4f} |")
    notes = "; ".join(f"{run.loss}: {LOSSES[run.loss].help}" for run in runs)
    note = (f"Each train loss is on its own loss's scale, not comparable across rows "
            f"({notes}). Accuracies are comparable.")
    lines += ["", note]
    return "\n".join(lines) + "\n"
