"""The chapter's training code, kept plain: accuracy, evaluation, SGD, one epoch.

``train_epoch`` is the chapter's ``train_epoch_ch3``: it takes either a ``torch.optim.Optimizer``
(gradient of the batch's mean loss, then ``step()``) or an updater callable ``updater(batch_size)``
(gradient of the summed loss; the updater divides by the batch size). The from-scratch model gets
its gradient from the loss's ``grad`` (``softmaxlab.functional``) and its written-out backward
pass; everything else from autograd. ``softmaxlab.fast`` is the tuned version of the same epoch;
the tests check that both end with the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from .errors import DataError
from .functional import LOSSES, Loss, get_loss
from .models import ScratchSoftmaxRegression

__all__ = ["LOSSES", "SGD", "Accumulator", "Loss", "accuracy", "evaluate_accuracy", "get_loss",
           "sgd", "train_epoch"]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Updater = torch.optim.Optimizer | Callable[[int], None]


def sgd(params: Sequence[torch.Tensor], lr: float, batch_size: int) -> None:
    """The chapter's minibatch SGD: p -= lr * p.grad / batch_size, then zero the gradient."""
    with torch.no_grad():
        for param in params:
            param.sub_(param.grad, alpha=lr / batch_size)
            param.grad.zero_()


class SGD:
    """Minibatch SGD as an updater ``updater(batch_size)``, with optional momentum and weight decay.

    The parameters' ``.grad`` hold the gradient of the summed loss; each step is p -= lr * v with
    v = momentum * v + p.grad / batch_size + weight_decay * p (``torch.optim.SGD``'s rule; with
    neither it is the chapter's ``sgd``).
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.params, self.lr = list(params), lr
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers: list[torch.Tensor] | None = None  # the velocities, from the first step on

    def __call__(self, batch_size: int) -> None:
        if not self.momentum and not self.weight_decay:
            sgd(self.params, self.lr, batch_size)
            return
        if self.buffers is None:
            self.buffers = [torch.zeros_like(p) for p in self.params]
        with torch.no_grad():
            for p, v in zip(self.params, self.buffers):
                v.mul_(self.momentum).add_(p.grad, alpha=1.0 / batch_size)
                v.add_(p, alpha=self.weight_decay)
                p.sub_(v, alpha=self.lr)
                p.grad.zero_()

    def state_dict(self) -> dict:
        """Like a torch optimizer's: {"state": {index: {"momentum_buffer": tensor}}}."""
        buffers = self.buffers or []
        return {"state": {i: {"momentum_buffer": v} for i, v in enumerate(buffers)}}

    def load_state_dict(self, state: dict) -> None:
        self.buffers = load_momentum_buffers(self.params, state)


def load_momentum_buffers(params: Sequence[torch.Tensor], state: dict) -> list[torch.Tensor] | None:
    """The velocities of a ``state_dict()`` as tensors laid out like ``params`` (None if none)."""
    saved = state.get("state", {})
    if not saved:
        return None
    return [torch.zeros_like(p).copy_(saved[i]["momentum_buffer"]) for i, p in enumerate(params)]


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """The number of correct predictions (a count, as in the chapter). y_hat (N, C) or (N,)."""
    if y_hat.ndim > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(dim=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


def evaluate_accuracy(model, batches: Batches) -> float:
    """Fraction of correct predictions of ``model`` over ``batches`` (eval mode, no gradients)."""
    if isinstance(model, nn.Module):
        model.eval()
    metric = Accumulator(2)  # correct predictions, examples
    with torch.no_grad():
        for X, y in batches:
            metric.add(accuracy(model(X), y), y.numel())
    return metric[0] / max(metric[1], 1)


class Accumulator:
    """n running sums: ``add(*values)``, ``reset()``, ``acc[i]``."""

    def __init__(self, n: int) -> None:
        self.data = [0.0] * n

    def add(self, *args: float) -> None:
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def reset(self) -> None:
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx: int) -> float:
        return self.data[idx]


def train_epoch(net, batches: Batches, loss: Loss | Callable, updater: Updater
                ) -> tuple[float, float]:
    """One pass over ``batches``; returns (mean training loss, training accuracy).

    net: the from-scratch model, an nn.Module, or any function X -> scores (N, C); loss: a
    ``Loss`` or a function (y_hat, y) -> per-example losses (N,); updater: a torch optimizer or
    ``updater(batch_size)``.
    """
    if isinstance(net, nn.Module):
        net.train()
    is_optimizer = isinstance(updater, torch.optim.Optimizer)
    # the from-scratch model with a Loss: the backward pass written out, no autograd
    by_hand = isinstance(net, ScratchSoftmaxRegression) and isinstance(loss, Loss)
    loss_fn = loss.value if isinstance(loss, Loss) else loss
    metric = Accumulator(3)  # sum of losses, correct predictions, examples
    for X, y in batches:
        n = y.numel()
        if is_optimizer:
            updater.zero_grad()
        with torch.set_grad_enabled(not by_hand):
            y_hat = net(X)
            losses = loss_fn(y_hat, y)
        if by_hand:
            net.backward(X, loss.grad(y_hat, y), scale=1.0 / n if is_optimizer else 1.0)
        elif is_optimizer:
            losses.mean().backward()
        else:
            losses.sum().backward()
        if is_optimizer:
            updater.step()
        else:
            updater(n)
        metric.add(float(losses.detach().sum()), accuracy(y_hat.detach(), y), n)
    if metric[2] == 0:
        raise DataError("no training batches: the training split is empty")
    return metric[0] / metric[2], metric[1] / metric[2]
