"""Softmax regression: the chapter's two models, its objective, and the model used for inference.

Both training models compute the scores (logits) ``o = X.reshape(-1, D) @ W + b`` and start from
the same draw ``W ~ N(0, sigma)`` of shape (D, C), ``b = 0``, so the same seed gives the same
start. The concise model stores ``W`` transposed, as ``nn.Linear`` does. ``SoftmaxModel`` is what
a trained model becomes: its weights and the preprocessing it was trained with, for evaluation,
prediction, the report and the scikit-learn estimator alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import ConfigError
from .functional import LOSSES, Loss, log_softmax, softmax
from .preprocess import Standardizer

SIGMA = 0.01  # std of the initial weights, as in the chapter
IMPLS = ("scratch", "concise")


def init_params(num_inputs: int, num_outputs: int, seed: int = 0, sigma: float = SIGMA,
                device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The chapter's start: W (D, C) ~ N(0, sigma) from a generator seeded ``seed``, b (C,) = 0.

    The draw is made on the CPU (the same numbers on every device), then moved to ``device``.
    """
    g = torch.Generator().manual_seed(seed)
    W = torch.normal(0.0, sigma, size=(num_inputs, num_outputs), generator=g, device="cpu")
    device = device or "cpu"
    return W.to(device), torch.zeros(num_outputs, device=device)


class ScratchSoftmaxRegression:
    """The from-scratch model: two tensors and a matmul, with its backward pass written out."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor) -> None:
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(f"W must be (D, C) and b (C,), got {tuple(W.shape)} and "
                             f"{tuple(b.shape)}")
        self.W = W.detach().clone().requires_grad_(True)
        self.b = b.detach().clone().requires_grad_(True)

    @property
    def num_inputs(self) -> int:
        return self.W.shape[0]

    def parameters(self) -> list[torch.Tensor]:
        return [self.W, self.b]

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """X (N, ...) with D features -> logits (N, C) = X W + b."""
        return X.reshape(-1, self.num_inputs) @ self.W + self.b

    def backward(self, X: torch.Tensor, dscores: torch.Tensor, scale: float = 1.0) -> None:
        """Set W.grad, b.grad to ``scale`` times the gradient of sum(dscores * scores).

        X (N, D...), dscores (N, C) = d loss / d scores per example. Since scores = X W + b,
        the gradient is X^T dscores (D, C) for W and the column sums of dscores (C,) for b.
        ``scale=1`` gives the gradient of the summed loss (the chapter's ``l.sum().backward()``),
        ``1/N`` that of the mean.
        """
        X2 = X.reshape(-1, self.num_inputs)
        self.W.grad = (X2.T @ dscores).mul_(scale)
        self.b.grad = dscores.sum(0).mul_(scale)


def concise_model(W: torch.Tensor, b: torch.Tensor) -> nn.Sequential:
    """``nn.Sequential(nn.Flatten(), nn.Linear(D, C))`` holding ``W.T`` and ``b``."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(W.shape[0], W.shape[1], device=W.device))
    with torch.no_grad():
        net[1].weight.copy_(W.t())
        net[1].bias.copy_(b)
    return net


def create_model(impl: str, num_inputs: int, num_outputs: int, seed: int = 0,
                 device: torch.device | str | None = None):
    """A fresh model of ``impl`` ("scratch" or "concise") from the seeded start."""
    W, b = init_params(num_inputs, num_outputs, seed, device=device)
    if impl == "scratch":
        return ScratchSoftmaxRegression(W, b)
    if impl == "concise":
        return concise_model(W, b)
    raise ConfigError(f"unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")


def weights(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The (W (D, C), b (C,)) of either model, detached (W is a view for the concise model)."""
    if isinstance(model, ScratchSoftmaxRegression):
        return model.W.detach(), model.b.detach()
    linear = model[1]
    return linear.weight.detach().t(), linear.bias.detach()


def weights_grad(model) -> torch.Tensor:
    """The gradient of W (D, C) of either model (a view of the concise weight's), to add to."""
    if isinstance(model, ScratchSoftmaxRegression):
        return model.W.grad
    return model[1].weight.grad.t()


def set_weights(model, W: torch.Tensor, b: torch.Tensor) -> None:
    """Copy W (D, C) and b (C,) into either model's parameters, in place."""
    W_, b_ = weights(model)
    if W_.shape != W.shape or b_.shape != b.shape:
        raise ValueError(f"expected W {tuple(W_.shape)} and b {tuple(b_.shape)}, got "
                         f"{tuple(W.shape)} and {tuple(b.shape)}")
    with torch.no_grad():
        W_.copy_(W)
        b_.copy_(b)


def objective(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
              loss: Loss = LOSSES["ce"], weight_decay: float = 0.0,
              sample_weight: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The full-batch objective mean_i loss(x_i W + b, y_i) + weight_decay/2 ‖W‖² and its gradient.

    W (D, C), b (C,), X (N, D), y (N,) -> (value (), dW (D, C), db (C,)). The bias is not
    penalised. ``sample_weight`` (N,), summing to 1, replaces the mean's 1/N per example. L-BFGS
    and the scikit-learn estimator minimise this.
    """
    o = torch.addmm(b, X, W)
    if sample_weight is None:  # dS (N, C): d value / d scores
        losses, dS = loss.value_and_grad(o, y, 1.0 / X.shape[0])
        value = losses.mean()
    else:
        losses, dS = loss.value_and_grad(o, y)
        value = sample_weight @ losses
        dS.mul_(sample_weight.unsqueeze(1))
    if weight_decay:
        value = value + 0.5 * weight_decay * (W * W).sum()
    # X^T dS + weight_decay W in one kernel (beta=0 ignores W)
    return value, torch.addmm(W, X.T, dS, beta=weight_decay), dS.sum(0)


def flat_objective(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                   weight_decay: float = 0.0, sample_weight: torch.Tensor | None = None
                   ) -> tuple[float, torch.Tensor]:
    """``objective`` for cross-entropy in the form full-batch solvers on flat parameters want.

    theta (D C + C,): W (D, C) row-major then b (C,); X (N, D), y (N,) int64 class indices
    (not checked: the caller validated them) -> (value, gradient in theta's layout, a new
    tensor). The same value and gradient as ``objective(W, b, X, y, LOSSES["ce"], ...)``
    (tested), computed on class-major scores (C, N): torch's softmax over 10 classes of each
    row of (N, C) is 4x slower than over the leading dimension; the 1/N (or the sample
    weights) goes into the backward product's alpha; dW lands in its place in the flat
    gradient, so nothing is concatenated. On the digits (1,437 x 64) an evaluation takes 25%
    less time than ``objective``'s; the products take half of it.
    """
    n, D = X.shape
    C = theta.shape[0] // (D + 1)
    W, b = theta[:D * C].view(D, C), theta[D * C:]
    log_p = torch.log_softmax(torch.addmm(b.unsqueeze(1), W.t(), X.t()), dim=0)  # (C, N)
    y_row = y.unsqueeze(0)
    picked = log_p.gather(0, y_row).squeeze(0)  # log p_y, (N,)
    grad_o = log_p.exp_()  # softmax - onehot, in place: d loss_i / d o_i
    grad_o.scatter_add_(0, y_row, torch.tensor(-1.0, dtype=X.dtype, device=X.device).expand(1, n))
    if sample_weight is None:
        value, scale = -float(picked.sum()) / n, 1.0 / n
    else:
        value, scale = -float(picked @ sample_weight), 1.0
        grad_o.mul_(sample_weight)
    grad = torch.empty_like(theta)
    # X^T dS + weight_decay W in one kernel (beta=0 ignores W), the bias's column sums after it
    torch.addmm(W, X.t(), grad_o.t(), beta=weight_decay, alpha=scale, out=grad[:D * C].view(D, C))
    torch.sum(grad_o, 1, out=grad[D * C:])
    if scale != 1.0:
        grad[D * C:].mul_(scale)
    if weight_decay:
        w = theta[:D * C]
        value += 0.5 * weight_decay * float(torch.dot(w, w))
    return value, grad


@dataclass
class SoftmaxModel:
    """A trained softmax regression ready to use: weights and the preprocessing it was trained with.

    W (D, C), b (C,); ``standardizer`` (or None) is applied to the inputs first. ``class_names``
    and ``image_shape`` (H, W) describe the data it was trained on, where known.
    """

    W: torch.Tensor
    b: torch.Tensor
    standardizer: Standardizer | None = None
    class_names: tuple[str, ...] = ()
    image_shape: tuple[int, int] | None = None

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        """X (N, ...) with D features (images: float in [0, 1]) -> logits (N, C)."""
        X = X.to(device=self.W.device, dtype=self.W.dtype)
        if self.standardizer is not None:
            X = self.standardizer(X)
        with torch.no_grad():
            return torch.addmm(self.b, X.reshape(len(X), -1), self.W)

    def predict_proba(self, X: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, C): the softmax of the logits."""
        return softmax(self.logits(X))

    def predict_log_proba(self, X: torch.Tensor) -> torch.Tensor:
        """Log class probabilities (N, C) by a stable log-softmax."""
        return log_softmax(self.logits(X))

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """The most probable class index of each example, (N,) int64."""
        return self.logits(X).argmax(1)
