"""Training: accuracy, evaluation, one epoch, and the loop that returns a history.

One epoch takes either a ``torch.optim.Optimizer`` (gradient of the batch's mean loss, then
``step()``) or a custom updater callable ``updater(batch_size)`` (gradient of the summed loss;
the updater divides by the batch size), the chapter's two paths. The from-scratch model gets its
gradients from the loss's ``_grad`` twin (``softmaxlab.functional``) instead of autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import functional as F
from .models import ScratchSoftmaxRegression

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Updater = torch.optim.Optimizer | Callable[[int], None]


@dataclass(frozen=True)
class Loss:
    """A classification loss on scores: per-example value and its gradient w.r.t. the scores."""

    name: str
    value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (N, C), (N,) -> (N,)
    grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (N, C), (N,) -> (N, C)
    # the training loop's hot path (see functional.py): without label checks, with the class
    # dimension as the last argument (0 for class-major scores (C, N)); values, gradients, and
    # both at once sharing the work
    values: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
    grads: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
    value_and_grad: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
    default_lr: float
    help: str


LOSSES = {
    "ce": Loss(
        "ce",
        lambda o, y: F.cross_entropy(o, y, reduction="none"),
        F.cross_entropy_grad,
        F.cross_entropy_values,
        F.cross_entropy_grads,
        F.cross_entropy_value_and_grad,
        0.1,
        "cross-entropy of softmax(o), the chapter's loss",
    ),
    "mse": Loss(
        "mse",
        lambda o, y: F.onehot_mse(o, y, reduction="none"),
        F.onehot_mse_grad,
        F.onehot_mse_values,
        F.onehot_mse_grads,
        F.onehot_mse_value_and_grad,
        0.01,
        "squared loss ½‖o − onehot(y)‖² on the raw scores o, summed over classes, "
        "averaged over the batch; predicts argmax o",
    ),
}


def get_loss(name: str) -> Loss:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None


def sgd(params: Sequence[torch.Tensor], lr: float, batch_size: int) -> None:
    """The chapter's minibatch SGD: p -= lr * p.grad / batch_size, then zero the gradient."""
    with torch.no_grad():
        for param in params:
            param.sub_(param.grad, alpha=lr / batch_size)
            param.grad.zero_()


class SGD:
    """Minibatch SGD as an updater object, with optional momentum and weight decay.

    ``updater(batch_size)`` is the chapter's path: the parameters' ``.grad`` hold the gradient of
    the summed loss; each step is p -= lr * v with v = momentum * v + p.grad / batch_size +
    weight_decay * p (``torch.optim.SGD``'s rule; with neither it is the chapter's ``sgd``).
    With the from-scratch model the training loop calls ``fused_step`` instead, which folds the
    same step into the backward matmul (``ScratchSoftmaxRegression.accumulate_grad``).
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.params, self.lr = list(params), lr
        self.momentum, self.weight_decay = momentum, weight_decay
        # velocities, in each parameter's own memory layout; created at the first step
        self.buffers: list[torch.Tensor] | None = None

    def _velocities(self) -> list[torch.Tensor]:
        if self.buffers is None:
            self.buffers = [torch.zeros_like(p) for p in self.params]
        return self.buffers

    def __call__(self, batch_size: int) -> None:
        if not self.momentum and not self.weight_decay:
            sgd(self.params, self.lr, batch_size)
            return
        with torch.no_grad():
            for p, v in zip(self.params, self._velocities()):
                v.mul_(self.momentum).add_(p.grad, alpha=1.0 / batch_size)
                v.add_(p, alpha=self.weight_decay)
                p.sub_(v, alpha=self.lr)
                p.grad.zero_()

    def fused_step(self, model: ScratchSoftmaxRegression, X: torch.Tensor, dscores: torch.Tensor,
                   batch_size: int) -> None:
        """The same step for the from-scratch model from X (N, D...) and dscores (N, C)."""
        with torch.no_grad():
            self.stepper(model)(X.reshape(-1, model.num_inputs), dscores.t(), batch_size)

    def stepper(self, model: ScratchSoftmaxRegression
                ) -> Callable[[torch.Tensor, torch.Tensor, int], None]:
        """``fused_step`` as a function of (X2 (N, D), dscores_t (C, N) class-major, batch size)
        with everything that stays the same from batch to batch bound once: for the training
        loop, under ``torch.no_grad()``, at this learning rate."""
        W_t, b, lr = model.W.t(), model.b, self.lr
        if not self.momentum and not self.weight_decay:
            step = model.accumulate_grad_fn(W_t, b)

            def sgd_step(X2: torch.Tensor, d_t: torch.Tensor, batch_size: int) -> None:
                step(X2, d_t, -lr / batch_size)

            return sgd_step
        vW, vb = self._velocities()
        vW_t, momentum, weight_decay = vW.t(), self.momentum, self.weight_decay
        accumulate = model.accumulate_grad_fn(vW_t, vb)

        def momentum_step(X2: torch.Tensor, d_t: torch.Tensor, batch_size: int) -> None:
            accumulate(X2, d_t, 1.0 / batch_size, momentum)
            if weight_decay:
                vW_t.add_(W_t, alpha=weight_decay)
                vb.add_(b, alpha=weight_decay)
            W_t.sub_(vW_t, alpha=lr)
            b.sub_(vb, alpha=lr)

        return momentum_step

    def state_dict(self) -> dict:
        """Like a torch optimizer's: {"state": {index: {"momentum_buffer": tensor}}}."""
        buffers = self.buffers or []
        return {"state": {i: {"momentum_buffer": v} for i, v in enumerate(buffers)}}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("state", {})
        if not saved:
            self.buffers = None
            return
        self.buffers = [torch.zeros_like(p).copy_(saved[i]["momentum_buffer"])
                        for i, p in enumerate(self.params)]


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """The number of correct predictions (a count, as in the chapter). y_hat (N, C) or (N,)."""
    if y_hat.ndim > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(dim=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


def evaluate_accuracy(model, batches: Batches) -> float:
    """Fraction of correct predictions of ``model`` over ``batches``."""
    if isinstance(model, nn.Module):
        model.eval()
    correct = total = 0
    with torch.no_grad():
        for X, y in batches:
            correct += int((model(X).argmax(1) == y).sum())
            total += y.numel()
    return correct / max(total, 1)


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


class ScoreStore:
    """The class-major scores (C, n) of an epoch's batches, kept for the end of the epoch.

    ``next(k)`` gives a (C, k) view to write a batch's scores into; ``scores()`` all of them.
    They live in blocks of ``block`` columns: a handful of allocations per epoch instead of a
    small tensor per batch (thousands of those, kept alive between each batch's temporaries,
    fragment the heap: +150 MB of resident memory on Fashion-MNIST).
    """

    def __init__(self, num_classes: int, dtype: torch.dtype, block: int = 65536) -> None:
        self.num_classes, self.dtype, self.block = num_classes, dtype, block
        self.blocks: list[torch.Tensor] = []
        self.used = 0  # columns used in the last block

    def next(self, k: int) -> torch.Tensor:
        if not self.blocks or self.used + k > self.blocks[-1].shape[1]:
            if self.blocks:
                self.blocks[-1] = self.blocks[-1][:, :self.used]
            self.blocks.append(torch.empty(self.num_classes, max(k, self.block), dtype=self.dtype))
            self.used = 0
        view = self.blocks[-1].narrow(1, self.used, k)  # (narrow: cheaper than [:, a:b])
        self.used += k
        return view

    def scores(self) -> torch.Tensor:
        if not self.blocks:
            return torch.empty(self.num_classes, 0, dtype=self.dtype)
        last = self.blocks[-1][:, :self.used]
        return last if len(self.blocks) == 1 else torch.cat([*self.blocks[:-1], last], dim=1)


def train_epoch(model, batches: Batches, loss: Loss, updater: Updater) -> tuple[float, float]:
    """One pass over ``batches``; returns (mean training loss, training accuracy)."""
    if isinstance(model, nn.Module):
        model.train()
    is_optimizer = isinstance(updater, torch.optim.Optimizer)
    scratch = isinstance(model, ScratchSoftmaxRegression)
    fused = scratch and isinstance(updater, SGD)
    # the class-major scores of every batch are kept and reduced once at the end, to the training
    # accuracy and (scratch) the per-example losses: no extra kernels, syncs or float() per batch
    losses: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    store = ScoreStore(model.W.shape[1], model.W.dtype) if scratch else None
    with torch.set_grad_enabled(not scratch):  # the scratch model's gradients are written out
        if store is not None:
            num_inputs, grads = model.num_inputs, loss.grads
            # the model's and the step's per-batch work with their views made once: the Python
            # around a batch's few kernels is a good part of an epoch
            scores_t = model.scores_t_fn()
            step = updater.stepper(model) if fused else None
            for X, y in batches:
                k = y.shape[0]  # (len(tensor) is a Python-level call: slow in this loop)
                X2 = X.reshape(k, num_inputs)
                # (C, B): the layout the small kernels are fast on
                d_t = grads(scores_t(X2, store.next(k)), y, 0)
                if step is not None:
                    step(X2, d_t, k)
                else:
                    model.backward(X2, d_t.t(), scale=1.0 / k if is_optimizer else 1.0)
                    if is_optimizer:
                        updater.step()
                    else:
                        updater(k)
                labels.append(y)
        else:
            for X, y in batches:
                o = model(X)
                scores.append(o.detach().t())
                l = loss.value(o, y)
                if is_optimizer:
                    updater.zero_grad()
                    l.mean().backward()
                else:
                    l.sum().backward()
                losses.append(l.detach())
                if is_optimizer:
                    updater.step()
                else:
                    updater(len(y))
                labels.append(y)
    if not labels:
        raise ValueError("no training batches: the training split is empty")
    y = torch.cat(labels)
    o_t = store.scores() if store is not None else torch.cat(scores, dim=1)
    values = loss.values(o_t, y, 0) if store is not None else torch.cat(losses)
    correct = int((o_t.max(0).indices == y).sum())
    n = len(y)
    return float(values.double().sum()) / n, correct / n
