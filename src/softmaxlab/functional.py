"""The math of the lecture, each rule with its gradient right beside it.

Every loss works elementwise on tensors of any shape and takes ``reduction`` in
``none | mean | sum``. Its gradient twin (suffix ``_grad``) takes the same arguments except
``reduction`` and returns the derivative of the *unreduced* loss with respect to its first
argument, in that argument's shape.

Why two softmaxes: ``naive_softmax`` is the chapter's ``exp(o) / sum(exp(o))``; ``exp`` of a
float32 score of 89 or more is ``inf``, and ``inf / inf`` is ``nan``. ``softmax`` subtracts each
row's maximum first, which leaves the result unchanged mathematically (the factor ``exp(-max)``
cancels) but keeps every ``exp`` in ``(0, 1]``. ``log_softmax`` uses the log-sum-exp the same way,
so cross-entropy from logits never takes ``log(0)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real

import torch

from .errors import ConfigError

REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------- checks


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction={reduction!r} is not allowed; use one of {', '.join(REDUCTIONS)}"
        )


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    _check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _broadcast(y_hat: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast ``y`` to ``y_hat`` (pointwise losses); both get ``y_hat``'s shape.

    Both also get the promoted floating dtype (integer inputs become the default float dtype), so
    an integer ``y_hat`` never truncates a float ``y``.
    """
    try:
        shape = torch.broadcast_shapes(y_hat.shape, y.shape)
    except RuntimeError:
        raise ValueError(
            f"shapes do not broadcast: y_hat has shape {tuple(y_hat.shape)}, "
            f"y has shape {tuple(y.shape)}"
        ) from None
    if shape != y_hat.shape:
        raise ValueError(
            f"y of shape {tuple(y.shape)} would broadcast y_hat of shape {tuple(y_hat.shape)} "
            f"to {tuple(shape)}; give y the shape of y_hat (or one that broadcasts to it)"
        )
    dtype = torch.result_type(y_hat, y)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return y_hat.to(dtype), y.to(dtype).expand_as(y_hat)


def _check_delta(delta: float) -> None:
    if isinstance(delta, bool) or not isinstance(delta, Real) or not (
        math.isfinite(delta) and delta > 0
    ):
        raise ValueError(
            f"delta={delta!r} is not allowed; Huber's threshold must be a finite number > 0"
        )


def _check_labels(scores: torch.Tensor, y: torch.Tensor) -> None:
    """scores (N, C), y (N,) of integer class indices in [0, C)."""
    if scores.ndim != 2:
        raise ValueError(f"expected scores of shape (N, C), got shape {tuple(scores.shape)}")
    if y.ndim != 1 or y.shape[0] != scores.shape[0]:
        raise ValueError(
            f"expected labels of shape ({scores.shape[0]},) for scores of shape "
            f"{tuple(scores.shape)}, got shape {tuple(y.shape)}"
        )
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= scores.shape[1]):
        bad = y[(y < 0) | (y >= scores.shape[1])][0].item()
        raise ValueError(
            f"label {bad} is out of range: with {scores.shape[1]} classes labels must be "
            f"in [0, {scores.shape[1] - 1}]"
        )


def one_hot(y: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """y (N,) int -> (N, num_classes) with a 1 at each row's class."""
    out = torch.zeros(y.shape[0], num_classes, dtype=dtype, device=y.device)
    return out.scatter_(1, y.long().unsqueeze(1), 1.0)


# --------------------------------------------------------------------------- softmax


def naive_softmax(o: torch.Tensor) -> torch.Tensor:
    """The chapter's softmax: exp, row sums, divide. o (N, C) -> (N, C). Overflows for o >= 89."""
    o_exp = torch.exp(o)
    partition = o_exp.sum(1, keepdim=True)
    return o_exp / partition


def softmax(o: torch.Tensor) -> torch.Tensor:
    """Stable softmax over the last dimension: exp(o - max) / sum. o (..., C) -> (..., C)."""
    e = torch.exp(o - o.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def log_softmax(o: torch.Tensor) -> torch.Tensor:
    """Stable log-softmax: o - logsumexp(o), computed around the row max. (..., C) -> (..., C)."""
    m = o.amax(dim=-1, keepdim=True)
    return o - m - torch.log(torch.exp(o - m).sum(dim=-1, keepdim=True))


# --------------------------------------------------------------------------- cross-entropy


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """-log softmax(o)_y from logits, stable. logits (N, C), y (N,) class indices -> (N,) or ()."""
    _check_reduction(reduction)
    _check_labels(logits, y)
    loss = -log_softmax(logits).gather(1, y.long().unsqueeze(1)).squeeze(1)
    return _reduce(loss, reduction)


def cross_entropy_grad(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d loss_i / d logits_i = softmax(o_i) - onehot(y_i), per example. (N, C) -> (N, C)."""
    _check_labels(logits, y)
    return softmax(logits) - one_hot(y, logits.shape[1], logits.dtype)


def cross_entropy_and_grad(logits: torch.Tensor, y: torch.Tensor, scale: float = 1.0
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``cross_entropy(o, y, "none")`` and ``scale * cross_entropy_grad(o, y)`` sharing one softmax.

    With m the row max, e = exp(o - m) and s = sum e: loss = (m - o_y) + log s, and the gradient
    e / s - onehot(y). (N, C), (N,) -> (losses (N,), grad (N, C)). Full-batch solvers evaluate
    both at every step (and want the gradient of the mean: ``scale`` = 1/N, applied in the same
    pass); one pass over the scores instead of three.
    """
    _check_labels(logits, y)
    m = logits.amax(dim=1, keepdim=True)
    e = torch.exp(logits - m)
    s = e.sum(dim=1, keepdim=True)
    y_ = y.long().unsqueeze(1)
    losses = (m - logits.gather(1, y_) + torch.log(s)).squeeze(1)  # (m - o_y first: exact)
    if scale != 1.0:
        s.div_(scale)  # e / (s / scale) = scale * e / s
    grad = e.div_(s).scatter_add_(1, y_, logits.new_full((logits.shape[0], 1), -scale))
    return losses, grad


def cross_entropy_from_probs(
    y_hat: torch.Tensor, y: torch.Tensor, reduction: str = "none"
) -> torch.Tensor:
    """The chapter's index-picking cross-entropy: -log(y_hat[range(N), y]).

    y_hat (N, C) probabilities, y (N,) -> (N,) (the chapter's per-example losses; reduction
    mean/sum gives ()). Gives inf when the picked probability is 0 and nan when it
    is nan (the naive softmax's overflow); use ``cross_entropy`` on logits to avoid both.
    """
    _check_reduction(reduction)
    _check_labels(y_hat, y)
    loss = -torch.log(y_hat[torch.arange(y_hat.shape[0], device=y_hat.device), y])
    return _reduce(loss, reduction)


# --------------------------------------------------------------------------- squared loss (L2)


def l2_loss(y_hat: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """½ (y_hat - y)², elementwise. y_hat (*), y broadcastable to it -> (*) or () if reduced."""
    _check_reduction(reduction)
    y_hat, y = _broadcast(y_hat, y)
    return _reduce(0.5 * (y_hat - y) ** 2, reduction)


def l2_loss_grad(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/dy_hat ½ (y_hat - y)² = y_hat - y. y_hat (*), y broadcastable to it -> (*)."""
    y_hat, y = _broadcast(y_hat, y)
    return y_hat - y


# --------------------------------------------------------------------------- absolute loss (L1)


def l1_loss(y_hat: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """|y_hat - y|, elementwise. y_hat (*), y broadcastable to it -> (*) or () if reduced."""
    _check_reduction(reduction)
    y_hat, y = _broadcast(y_hat, y)
    return _reduce((y_hat - y).abs(), reduction)


def l1_loss_grad(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sign(y_hat - y), the subgradient 0 taken at 0. y_hat (*), y broadcastable -> (*)."""
    y_hat, y = _broadcast(y_hat, y)
    return torch.sign(y_hat - y)


# --------------------------------------------------------------------------- Huber's robust loss


def huber_loss(
    y_hat: torch.Tensor, y: torch.Tensor, delta: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """½x² for |x| <= delta, delta(|x| - ½delta) outside, with x = y_hat - y (PyTorch's HuberLoss).

    y_hat (*), y broadcastable to it -> (*), or () with reduction mean/sum.
    """
    _check_reduction(reduction)
    _check_delta(delta)
    y_hat, y = _broadcast(y_hat, y)
    a = (y_hat - y).abs()
    loss = torch.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))
    return _reduce(loss, reduction)


def huber_loss_grad(y_hat: torch.Tensor, y: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """x = y_hat - y clipped to [-delta, delta]. y_hat (*), y broadcastable to it -> (*)."""
    _check_delta(delta)
    y_hat, y = _broadcast(y_hat, y)
    return (y_hat - y).clamp(-delta, delta)


# ------------------------------------------------------------- squared loss on one-hot labels


def onehot_mse(scores: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """½‖o - onehot(y)‖² per example, summed over classes. scores (N, C), y (N,) -> (N,) or ()."""
    _check_reduction(reduction)
    _check_labels(scores, y)
    diff = scores - one_hot(y, scores.shape[1], scores.dtype)
    return _reduce(0.5 * (diff * diff).sum(1), reduction)


def onehot_mse_grad(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/do ½‖o - onehot(y)‖² = o - onehot(y), per example. (N, C) -> (N, C)."""
    _check_labels(scores, y)
    return scores - one_hot(y, scores.shape[1], scores.dtype)


# --------------------------------------------------------------- the classification losses


@dataclass(frozen=True)
class Loss:
    """A classification loss on scores: its per-example value and the gradient beside it.

    ``value(o, y)``: scores (N, C), labels (N,) -> losses (N,); ``grad(o, y)``: the derivative of
    each example's loss with respect to its scores, (N, C). The training loop's tuned versions of
    both live in ``softmaxlab.fast``; the tests check them against these.
    """

    name: str
    value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    default_lr: float  # the learning rate that trains well with the chapter's recipe
    help: str
    # (value, scale * grad) in one pass where the loss has one; else the two calls
    both: Callable[[torch.Tensor, torch.Tensor, float],
                   tuple[torch.Tensor, torch.Tensor]] | None = None

    def value_and_grad(self, o: torch.Tensor, y: torch.Tensor, scale: float = 1.0
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(value(o, y), scale * grad(o, y)), in one pass when the loss has one."""
        if self.both is not None:
            return self.both(o, y, scale)
        grad = self.grad(o, y)
        return self.value(o, y), grad if scale == 1.0 else grad.mul_(scale)


LOSSES = {
    "ce": Loss("ce", lambda o, y: cross_entropy(o, y, reduction="none"), cross_entropy_grad, 0.1,
               "cross-entropy of softmax(o), the chapter's loss", cross_entropy_and_grad),
    "mse": Loss("mse", lambda o, y: onehot_mse(o, y, reduction="none"), onehot_mse_grad, 0.01,
                "squared loss ½‖o − onehot(y)‖² on the raw scores o, summed over classes, "
                "averaged over the batch; predicts argmax o"),
}


def get_loss(name: str) -> Loss:
    """The loss called ``name`` (a key of ``LOSSES``)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None
