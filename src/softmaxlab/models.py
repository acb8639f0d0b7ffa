"""Softmax regression two ways: the chapter's from-scratch model and the concise nn.Module.

Both compute the scores (logits) ``o = X.reshape(-1, D) @ W + b`` and start from the same draw
``W ~ N(0, sigma)`` of shape (D, C), ``b = 0``, so the same seed gives the same start. The concise
model stores ``W`` transposed, as ``nn.Linear`` does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

SIGMA = 0.01  # std of the initial weights, as in the chapter


def init_params(
    num_inputs: int, num_outputs: int, seed: int = 0, sigma: float = SIGMA
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chapter's start: W (D, C) ~ N(0, sigma) from a generator seeded ``seed``, b (C,) = 0."""
    g = torch.Generator().manual_seed(seed)
    W = torch.normal(0.0, sigma, size=(num_inputs, num_outputs), generator=g)
    b = torch.zeros(num_outputs)
    return W, b


class ScratchSoftmaxRegression:
    """The from-scratch model: two tensors and a matmul, with its backward pass written out.

    ``model(X)`` gives the logits (N, C); ``scores_t`` the same class-major (C, N), and
    ``accumulate_grad`` / ``backward`` the backward pass, written out.
    """

    def __init__(self, W: torch.Tensor, b: torch.Tensor) -> None:
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(f"W must be (D, C) and b (C,), got {tuple(W.shape)} and {tuple(b.shape)}")
        # W is (D, C) as in the chapter but stored column-major (W.t() is contiguous, the layout
        # of nn.Linear's weight): the BLAS kernels for W^T X^T and dS^T X are several times
        # faster for these thin shapes than X W and X^T dS (see README "Performance").
        self.W = W.detach().t().contiguous().t().requires_grad_(True)
        self.b = b.detach().clone().requires_grad_(True)

    @property
    def num_inputs(self) -> int:
        return self.W.shape[0]

    def parameters(self) -> list[torch.Tensor]:
        return [self.W, self.b]

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """X (N, ...) with D features -> logits (N, C) (a view of ``scores_t``)."""
        return self.scores_t(X).t()

    def scores_t(self, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """X (N, ...) -> class-major logits (C, N): W^T X^T + b, one BLAS call.

        ``out``: a (C, N) float view to write them into (its rows may be strided, e.g. columns
        of a larger matrix); returned.
        """
        return self.scores_t_fn()(X.reshape(-1, self.num_inputs), out)

    def scores_t_fn(self) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
        """``scores_t`` as a function of (X2 (N, D), out) with the parameters' views made once,
        for a loop over batches (the views stay valid: the parameters change in place)."""
        b_col, W_t = self.b.unsqueeze(1), self.W.t()

        def scores_t(X2: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            return torch.addmm(b_col, W_t, X2.t(), out=out)

        return scores_t

    def accumulate_grad(self, X: torch.Tensor, dscores: torch.Tensor, out_w_t: torch.Tensor,
                        out_b: torch.Tensor, beta: float = 1.0, alpha: float = 1.0) -> None:
        """The backward pass, accumulated: out_w_t <- beta out_w_t + alpha dS^T X (C, D) and
        out_b <- beta out_b + alpha sum(dS) (C,), in place, one BLAS call.

        X (N, D...), dscores (N, C) = d loss / d scores per example (the gradient of
        sum(dscores * scores)). With (out_w_t, out_b) = (W.t(), b), beta = 1 and alpha = -lr / N
        this *is* an SGD step, with no gradient tensor in between.
        """
        accumulate = self.accumulate_grad_fn(out_w_t, out_b)
        accumulate(X.reshape(-1, self.num_inputs), dscores.t(), alpha, beta)

    def accumulate_grad_fn(self, out_w_t: torch.Tensor, out_b: torch.Tensor
                           ) -> Callable[[torch.Tensor, torch.Tensor, float, float], None]:
        """``accumulate_grad`` into (out_w_t, out_b) as a function of (X2 (N, D), dscores_t
        (C, N) class-major, alpha, beta=1), for a loop over batches."""

        def accumulate(X2: torch.Tensor, d_t: torch.Tensor, alpha: float, beta: float = 1.0
                       ) -> None:
            out_w_t.addmm_(d_t, X2, beta=beta, alpha=alpha)
            if beta == 0:
                out_b.zero_()
            elif beta != 1:
                out_b.mul_(beta)
            out_b.add_(d_t.sum(1), alpha=alpha)

        return accumulate

    def backward(self, X: torch.Tensor, dscores: torch.Tensor, scale: float = 1.0) -> None:
        """Set W.grad, b.grad to ``scale`` times the gradient of sum(dscores * scores).

        X (N, D...), dscores (N, C) = d loss / d scores per example. ``scale=1`` gives the gradient
        of the summed loss (the chapter's ``l.sum().backward()``), ``1/N`` of the mean. The
        gradients are written into the existing ones when there are (no allocation per batch).
        """
        gW, gb = self.W.grad, self.b.grad
        if gW is None or gW.stride() != self.W.stride() or gb is None:
            gW, gb = torch.empty_like(self.W), torch.empty_like(self.b)  # W's layout
        self.accumulate_grad(X, dscores, gW.t(), gb, beta=0.0, alpha=scale)
        self.W.grad, self.b.grad = gW, gb


def concise_model(W: torch.Tensor, b: torch.Tensor) -> nn.Sequential:
    """``nn.Sequential(nn.Flatten(), nn.Linear(D, C))`` holding ``W.T`` and ``b``."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(W.shape[0], W.shape[1]))
    with torch.no_grad():
        net[1].weight.copy_(W.t())
        net[1].bias.copy_(b)
    return net


def create_model(impl: str, num_inputs: int, num_outputs: int, seed: int = 0):
    """A fresh model of ``impl`` ("scratch" or "concise") from the seeded start."""
    W, b = init_params(num_inputs, num_outputs, seed)
    if impl == "scratch":
        return ScratchSoftmaxRegression(W, b)
    if impl == "concise":
        return concise_model(W, b)
    raise ValueError(f"unknown impl {impl!r}; choose scratch or concise")


def weights(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The (W (D, C), b (C,)) of either model, detached (W is a view for the concise model)."""
    if isinstance(model, ScratchSoftmaxRegression):
        return model.W.detach(), model.b.detach()
    linear = model[1]
    return linear.weight.detach().t(), linear.bias.detach()
