"""softmaxlab.functional checked against PyTorch: values, gradients, overflow and bad input.

PyTorch is the oracle (as in micrograd's tests): every loss is compared with torch.nn.functional,
every ``_grad`` twin with autograd of its own loss, and each loss wrapped with its ``_grad`` as an
``autograd.Function`` goes through ``torch.autograd.gradcheck`` (finite differences in float64).
Pointwise inputs keep ``y_hat - y`` away from the kinks of L1 (0) and Huber (±delta).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF

from softmaxlab import functional as F

REDUCTIONS = ("none", "mean", "sum")
DELTAS = (0.5, 1.0, 2.0)
DTYPES = (torch.float32, torch.float64)
SHAPES = ((), (7,), (3, 4), (2, 3, 5))
KINK_GAP = 0.05  # |y_hat - y| stays this far from 0 and from ±delta


def tol(dtype: torch.dtype) -> dict:
    """rtol/atol 1e-6 in float64; PyTorch's defaults (None) in float32."""
    return {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float64 else {}


# --------------------------------------------------------------------------- the losses under test


def torch_huber(y_hat, y, delta, reduction):
    return TF.huber_loss(y_hat, y, reduction=reduction, delta=delta)


# name -> (ours, its _grad, PyTorch's; each called as f(y_hat, y, delta[, reduction]))
POINTWISE = {
    "l2": (
        lambda a, b, d, r: F.l2_loss(a, b, reduction=r),
        lambda a, b, d: F.l2_loss_grad(a, b),
        lambda a, b, d, r: 0.5 * TF.mse_loss(a, b, reduction=r),
    ),
    "l1": (
        lambda a, b, d, r: F.l1_loss(a, b, reduction=r),
        lambda a, b, d: F.l1_loss_grad(a, b),
        lambda a, b, d, r: TF.l1_loss(a, b, reduction=r),
    ),
    "huber": (
        lambda a, b, d, r: F.huber_loss(a, b, delta=d, reduction=r),
        lambda a, b, d: F.huber_loss_grad(a, b, delta=d),
        torch_huber,
    ),
}

# (name, delta): Huber with several thresholds, the others once
POINTWISE_CASES = [("l2", 1.0), ("l1", 1.0)] + [("huber", d) for d in DELTAS]


def pointwise_inputs(shape, dtype, delta=1.0, seed=0):
    """(y_hat, y) with |y_hat - y| in [0.1, 3], at least KINK_GAP away from delta."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(shape, generator=g, dtype=torch.float64)
    mag = 0.1 + 2.9 * torch.rand(shape, generator=g, dtype=torch.float64)
    mag = torch.where((mag - delta).abs() < KINK_GAP, mag + 2 * KINK_GAP, mag)
    sign = torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    return (y + sign * mag).to(dtype), y.to(dtype)


def class_inputs(dtype, n=6, c=5, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    o = (scale * torch.randn(n, c, generator=g, dtype=torch.float64)).to(dtype)
    y = torch.randint(0, c, (n,), generator=g)
    return o, y


# --------------------------------------------------------------------------- values vs PyTorch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,delta", POINTWISE_CASES)
def test_pointwise_loss_matches_torch(name, delta, reduction, shape, dtype):
    ours, _, theirs = POINTWISE[name]
    y_hat, y = pointwise_inputs(shape, dtype, delta)
    got = ours(y_hat, y, delta, reduction)
    assert got.shape == (shape if reduction == "none" else ())
    torch.testing.assert_close(got, theirs(y_hat, y, delta, reduction), **tol(dtype))


def test_huber_covers_both_regimes_and_joins_l2_and_l1():
    """Inside delta Huber is L2, outside it is delta * L1 minus a constant; both parts are hit."""
    delta = 1.0
    y_hat, y = pointwise_inputs((200,), torch.float64, delta)
    inside = (y_hat - y).abs() <= delta
    assert inside.any() and (~inside).any()
    h = F.huber_loss(y_hat, y, delta=delta, reduction="none")
    torch.testing.assert_close(h[inside], F.l2_loss(y_hat, y, reduction="none")[inside])
    torch.testing.assert_close(
        h[~inside], delta * F.l1_loss(y_hat, y, reduction="none")[~inside] - 0.5 * delta**2
    )


@pytest.mark.parametrize("name,delta", POINTWISE_CASES)
def test_pointwise_loss_broadcasts_y_to_y_hat(name, delta):
    ours, grad, theirs = POINTWISE[name]
    y_hat, _ = pointwise_inputs((3, 4), torch.float64, delta)
    y = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)  # (4,) -> (3, 4)
    torch.testing.assert_close(ours(y_hat, y, delta, "none"),
                               theirs(y_hat, y.expand_as(y_hat), delta, "none"))
    assert grad(y_hat, y, delta).shape == y_hat.shape


def test_integer_predictions_do_not_truncate_float_targets():
    y_hat, y = torch.tensor([1, 2]), torch.tensor([0.5, 0.5])
    torch.testing.assert_close(F.l2_loss(y_hat, y, reduction="none"), torch.tensor([0.125, 1.125]))
    torch.testing.assert_close(F.l1_loss_grad(y_hat, y), torch.tensor([1.0, 1.0]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_matches_torch(reduction, dtype):
    o, y = class_inputs(dtype)
    got = F.cross_entropy(o, y, reduction=reduction)
    torch.testing.assert_close(got, TF.cross_entropy(o, y, reduction=reduction), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_onehot_mse_matches_torch(reduction, dtype):
    o, y = class_inputs(dtype)
    per_example = 0.5 * TF.mse_loss(o, TF.one_hot(y, o.shape[1]).to(dtype), reduction="none").sum(1)
    expected = {"none": per_example, "mean": per_example.mean(), "sum": per_example.sum()}
    torch.testing.assert_close(F.onehot_mse(o, y, reduction=reduction), expected[reduction],
                               **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4), (10,)])
def test_softmax_and_log_softmax_match_torch(shape, dtype):
    o = 5 * torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    p = F.softmax(o)
    torch.testing.assert_close(p, TF.softmax(o, dim=-1), **tol(dtype))
    torch.testing.assert_close(F.log_softmax(o), TF.log_softmax(o, dim=-1), **tol(dtype))
    # a distribution that keeps the order of the scores
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(shape[:-1], dtype=dtype), **tol(dtype))
    assert torch.equal(p.argmax(-1), o.argmax(-1))


def test_naive_softmax_equals_stable_where_it_does_not_overflow():
    o, _ = class_inputs(torch.float64, n=20, c=10, scale=10.0)
    torch.testing.assert_close(F.naive_softmax(o), F.softmax(o), rtol=1e-12, atol=1e-15)
    o32 = torch.tensor([[88.0, 0.0, -5.0], [1.0, 2.0, 3.0]])  # exp(88) is still finite in float32
    torch.testing.assert_close(F.naive_softmax(o32), F.softmax(o32))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_from_probs_of_softmax_equals_cross_entropy(reduction):
    o, y = class_inputs(torch.float64)
    torch.testing.assert_close(
        F.cross_entropy_from_probs(F.softmax(o), y, reduction=reduction),
        F.cross_entropy(o, y, reduction=reduction), rtol=1e-6, atol=1e-6,
    )


def test_cross_entropy_from_probs_picks_the_true_class():
    p = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])  # the chapter's example
    y = torch.tensor([0, 2])
    torch.testing.assert_close(F.cross_entropy_from_probs(p, y),
                               -torch.log(torch.tensor([0.1, 0.5])))


# --------------------------------------------------------------------------- gradients


CLASS_LOSSES = {
    "ce": (F.cross_entropy, F.cross_entropy_grad),
    "onehot_mse": (F.onehot_mse, F.onehot_mse_grad),
}


def reduce_weights(reduction: str, numel: int, shape, dtype, seed=3):
    """The upstream gradient of the reduced loss per element, and how to reduce with it."""
    if reduction == "none":
        v = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
        return v, v
    w = torch.full(shape, 1.0 / numel if reduction == "mean" else 1.0, dtype=dtype)
    return w, None


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,delta", POINTWISE_CASES)
def test_pointwise_grad_matches_autograd(name, delta, reduction, shape):
    ours, grad, _ = POINTWISE[name]
    y_hat, y = pointwise_inputs(shape, torch.float64, delta, seed=2)
    y_hat.requires_grad_(True)
    loss = ours(y_hat, y, delta, reduction)
    weight, upstream = reduce_weights(reduction, y_hat.numel(), shape, torch.float64)
    (auto,) = torch.autograd.grad(loss, y_hat, grad_outputs=upstream)
    expected = weight * grad(y_hat.detach(), y, delta)
    torch.testing.assert_close(auto, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["ce", "onehot_mse"])
def test_class_loss_grad_matches_autograd(name, reduction):
    loss_fn, grad_fn = CLASS_LOSSES[name]
    o, y = class_inputs(torch.float64)
    o.requires_grad_(True)
    loss = loss_fn(o, y, reduction=reduction)
    n = o.shape[0]
    upstream = torch.randn(n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    weight = {"none": upstream, "mean": torch.full((n,), 1.0 / n, dtype=torch.float64),
              "sum": torch.ones(n, dtype=torch.float64)}[reduction]
    (auto,) = torch.autograd.grad(loss, o, grad_outputs=upstream if reduction == "none" else None)
    torch.testing.assert_close(auto, weight[:, None] * grad_fn(o.detach(), y),
                               rtol=1e-6, atol=1e-6)


def test_cross_entropy_grad_is_softmax_minus_onehot_and_rows_sum_to_zero():
    o, y = class_inputs(torch.float64)
    g = F.cross_entropy_grad(o, y)
    expected = TF.softmax(o, dim=1) - TF.one_hot(y, o.shape[1]).to(o.dtype)
    torch.testing.assert_close(g, expected)
    torch.testing.assert_close(g.sum(1), torch.zeros(o.shape[0], dtype=o.dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_and_grad_in_one_pass_matches_torch(dtype):
    o, y = class_inputs(dtype)
    o = torch.cat([o, torch.full_like(o[:1], 1e4)])  # a row that would overflow exp
    y = torch.cat([y, y[:1]])
    losses, grad = F.cross_entropy_and_grad(o, y)
    torch.testing.assert_close(losses, TF.cross_entropy(o, y, reduction="none"))
    auto = o.clone().requires_grad_(True)
    TF.cross_entropy(auto, y, reduction="sum").backward()
    torch.testing.assert_close(grad, auto.grad)
    both = F.LOSSES["ce"].value_and_grad(o, y)  # the loss table's one-pass path is this one
    torch.testing.assert_close(both[0], losses)
    mse = F.LOSSES["mse"].value_and_grad(o, y)  # losses without one: the two calls
    torch.testing.assert_close(mse[1], F.onehot_mse_grad(o, y))
    # the gradient of a mean: scaled in the same pass
    torch.testing.assert_close(F.cross_entropy_and_grad(o, y, 0.25)[1], 0.25 * auto.grad)
    torch.testing.assert_close(F.LOSSES["mse"].value_and_grad(o, y, 0.25)[1],
                               0.25 * F.onehot_mse_grad(o, y))
    with pytest.raises(ValueError, match="out of range"):
        F.cross_entropy_and_grad(o, torch.full_like(y, o.shape[1]))


def with_grad(loss_fn, grad_fn, reduction: str, per_example: bool = False):
    """loss_fn(y_hat, y, reduction) as an autograd.Function whose backward is grad_fn(y_hat, y).

    Pointwise losses have one loss per element of y_hat; ``per_example`` ones (scores (N, C))
    one per row, so their mean divides by N.
    """

    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y_hat, y):
            ctx.save_for_backward(y_hat, y)
            return loss_fn(y_hat, y, reduction)

        @staticmethod
        def backward(ctx, grad_out):
            y_hat, y = ctx.saved_tensors
            if reduction == "none":
                upstream = grad_out[:, None] if per_example else grad_out
            else:
                n = y_hat.shape[0] if per_example else y_hat.numel()
                upstream = grad_out / n if reduction == "mean" else grad_out
            return upstream * grad_fn(y_hat, y), None

    return Loss.apply


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,delta", POINTWISE_CASES)
def test_gradcheck_pointwise_loss_with_its_grad(name, delta, reduction):
    ours, grad, _ = POINTWISE[name]
    fn = with_grad(lambda a, b, r: ours(a, b, delta, r), lambda a, b: grad(a, b, delta),
                   reduction)
    y_hat, y = pointwise_inputs((3, 4), torch.float64, delta, seed=5)
    assert torch.autograd.gradcheck(fn, (y_hat.requires_grad_(True), y))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["ce", "onehot_mse"])
def test_gradcheck_class_loss_with_its_grad(name, reduction):
    loss_fn, grad_fn = CLASS_LOSSES[name]
    fn = with_grad(lambda o, y, r: loss_fn(o, y, reduction=r), grad_fn, reduction,
                   per_example=True)
    o, y = class_inputs(torch.float64)
    assert torch.autograd.gradcheck(fn, (o.requires_grad_(True), y))


def test_gradcheck_catches_a_wrong_rule():
    """The gradcheck harness is not vacuous: a wrong backward rule fails it."""
    fn = with_grad(lambda a, b, r: F.l2_loss(a, b, reduction=r),
                   lambda a, b: 2 * F.l2_loss_grad(a, b), "sum")
    y_hat, y = pointwise_inputs((3,), torch.float64)
    assert not torch.autograd.gradcheck(fn, (y_hat.requires_grad_(True), y), raise_exception=False)


def test_l1_subgradient_is_zero_at_zero_and_huber_grad_is_continuous_at_delta():
    y = torch.zeros(5, dtype=torch.float64)
    x = torch.tensor([-2.0, -1e-9, 0.0, 1e-9, 2.0], dtype=torch.float64)
    assert F.l1_loss_grad(x, y).tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]
    for delta in DELTAS:
        at = torch.tensor([-delta, delta], dtype=torch.float64)
        eps = 1e-9
        zero = torch.zeros(2, dtype=torch.float64)
        for x in (at * (1 - eps), at, at * (1 + eps)):  # just inside, on, just outside the kink
            torch.testing.assert_close(F.huber_loss_grad(x, zero, delta=delta), at)


# --------------------------------------------------------------------------- overflow


def test_naive_forms_overflow_and_stable_forms_do_not():
    """[[100, 1, 2]]: exp(100) is inf in float32, so the naive softmax computes inf / inf = nan."""
    o = torch.tensor([[100.0, 1.0, 2.0]])
    naive = F.naive_softmax(o)
    assert math.isnan(naive[0, 0].item())
    # the naive cross-entropy: nan for the class that overflowed, inf (log 0) for any other
    assert math.isnan(F.cross_entropy_from_probs(naive, torch.tensor([0])).item())
    for label in (1, 2):
        assert F.cross_entropy_from_probs(naive, torch.tensor([label])).item() == math.inf
    stable = F.softmax(o)
    assert torch.isfinite(stable).all() and torch.isfinite(F.log_softmax(o)).all()
    torch.testing.assert_close(stable, TF.softmax(o, dim=1))
    torch.testing.assert_close(F.log_softmax(o), TF.log_softmax(o, dim=1))
    for label in (0, 1, 2):
        y = torch.tensor([label])
        ce = F.cross_entropy(o, y)
        assert math.isfinite(ce.item())
        torch.testing.assert_close(ce, TF.cross_entropy(o, y))
        assert torch.isfinite(F.cross_entropy_grad(o, y)).all()


def test_log_of_the_stable_softmax_still_underflows_but_log_softmax_does_not():
    """softmax(o) = exp(-199) rounds to 0 in float32: -log of it is inf, the true loss is 199."""
    o, y = torch.tensor([[200.0, 1.0, 2.0]]), torch.tensor([1])
    assert F.softmax(o)[0, 1].item() == 0.0
    assert F.cross_entropy_from_probs(F.softmax(o), y).item() == math.inf
    torch.testing.assert_close(F.cross_entropy(o, y), torch.tensor(199.0))
    torch.testing.assert_close(F.cross_entropy(o, y), TF.cross_entropy(o, y))


@pytest.mark.parametrize("score", [89.0, 100.0, 1000.0])
def test_float32_scores_from_89_overflow_the_naive_softmax(score):
    o = torch.tensor([[score, 0.0], [0.0, 0.0]])
    assert torch.isnan(F.naive_softmax(o)[0]).any()
    torch.testing.assert_close(F.softmax(o), TF.softmax(o, dim=1))
    torch.testing.assert_close(F.cross_entropy(o, torch.tensor([1, 0]), reduction="none"),
                               TF.cross_entropy(o, torch.tensor([1, 0]), reduction="none"))


# --------------------------------------------------------------------------- bad input


ALL_POINTWISE_CALLS = [
    lambda a, b: F.l2_loss(a, b),
    lambda a, b: F.l2_loss_grad(a, b),
    lambda a, b: F.l1_loss(a, b),
    lambda a, b: F.l1_loss_grad(a, b),
    lambda a, b: F.huber_loss(a, b),
    lambda a, b: F.huber_loss_grad(a, b),
]


@pytest.mark.parametrize("call", ALL_POINTWISE_CALLS)
def test_shapes_that_do_not_broadcast_name_both_shapes(call):
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3,\)"):
        call(torch.zeros(3, 4), torch.zeros(3))


@pytest.mark.parametrize("call", ALL_POINTWISE_CALLS)
def test_y_that_would_grow_y_hat_is_refused(call):
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(4,\).*\(2, 4\)"):
        call(torch.zeros(4), torch.zeros(2, 4))


@pytest.mark.parametrize("delta", [0, 0.0, -1.0, float("nan"), float("inf"), "1", True])
def test_bad_delta_names_the_value_and_the_rule(delta):
    for fn in (F.huber_loss, F.huber_loss_grad):
        with pytest.raises(ValueError, match=rf"delta={delta!r}.*> 0"):
            fn(torch.zeros(2), torch.zeros(2), delta=delta)


@pytest.mark.parametrize("fn", [F.l2_loss, F.l1_loss, F.huber_loss, F.cross_entropy,
                                F.cross_entropy_from_probs, F.onehot_mse])
def test_unknown_reduction_names_the_value_and_the_choices(fn):
    a = torch.ones(2, 3)
    b = torch.zeros(2, 3) if fn in (F.l2_loss, F.l1_loss, F.huber_loss) else torch.tensor([0, 1])
    with pytest.raises(ValueError, match="reduction='avg'.*none, mean, sum"):
        fn(a, b, reduction="avg")


@pytest.mark.parametrize("fn", [F.cross_entropy, F.cross_entropy_grad,
                                F.cross_entropy_from_probs, F.onehot_mse, F.onehot_mse_grad])
@pytest.mark.parametrize("label", [-1, 3, 10])
def test_labels_out_of_range_are_a_clear_error(fn, label):
    with pytest.raises(ValueError, match=rf"label {label} is out of range.*\[0, 2\]"):
        fn(torch.zeros(2, 3), torch.tensor([0, label]))


@pytest.mark.parametrize("fn", [F.cross_entropy, F.cross_entropy_grad, F.cross_entropy_from_probs])
def test_bad_label_shape_or_dtype_is_a_clear_error(fn):
    with pytest.raises(ValueError, match=r"labels of shape \(2,\).*got shape \(3,\)"):
        fn(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer class indices.*float32"):
        fn(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"scores of shape \(N, C\), got shape \(3,\)"):
        fn(torch.zeros(3), torch.tensor([0, 1, 2]))
