"""The training code: the pieces, the plain loop, the tuned epoch and the sessions they make."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from softmaxlab import functional as F
from softmaxlab.data import ImageDataset
from softmaxlab.data.datasets import epoch_permutation
from softmaxlab.errors import ConfigError
from softmaxlab.fast import LOSSES_T, FastSGD, ScoreStore
from softmaxlab.models import (
    ScratchSoftmaxRegression,
    create_model,
    flat_objective,
    init_params,
    objective,
    weights,
)
from softmaxlab.runner import Session, Standardizer, TrainConfig, lr_at
from softmaxlab.train import (
    LOSSES,
    SGD,
    Accumulator,
    accuracy,
    evaluate_accuracy,
    sgd,
    train_epoch,
)

CLASSES = tuple(f"c{i}" for i in range(10))


def synthetic(n: int, seed: int = 0) -> ImageDataset:
    """Images whose mean brightness in a class-dependent patch tells the class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.int64)
    for i, c in enumerate(labels.tolist()):
        images[i, 2 * c:2 * c + 6, 4:24] += 150
    return ImageDataset(images.to(torch.uint8), labels, CLASSES, "synthetic")


@pytest.fixture(scope="module")
def data():
    return synthetic(600, 0), synthetic(200, 1)


def final_weights(session: Session) -> tuple[torch.Tensor, torch.Tensor]:
    W, b = weights(session.model)
    return W.clone(), b.clone()


# ----------------------------------------------------------------------------- the pieces


def test_init_params_seeded_and_chapter_scale():
    W, b = init_params(784, 10, seed=3)
    W2, _ = init_params(784, 10, seed=3)
    assert W.shape == (784, 10) and b.shape == (10,)
    assert torch.equal(W, W2) and torch.count_nonzero(b) == 0
    assert 0.009 < W.std().item() < 0.011 and abs(W.mean().item()) < 0.001


def test_concise_model_starts_from_the_scratch_draw():
    scratch = create_model("scratch", 784, 10, seed=5)
    concise = create_model("concise", 784, 10, seed=5)
    assert isinstance(concise, nn.Sequential)
    assert isinstance(concise[0], nn.Flatten) and isinstance(concise[1], nn.Linear)
    Ws, bs = weights(scratch)
    Wc, bc = weights(concise)
    assert torch.equal(Ws, Wc) and torch.equal(bs, bc)
    X = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(scratch(X), concise(X))


def test_accuracy_counts_and_accumulator():
    y_hat = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
    assert accuracy(y_hat, torch.tensor([0, 2])) == 1.0
    acc = Accumulator(2)
    acc.add(1, 2)
    acc.add(3.5, 4)
    assert acc[0] == 4.5 and acc[1] == 6
    acc.reset()
    assert acc.data == [0.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_fast_class_major_losses_equal_the_reference(name, dtype):
    """fast.LOSSES_T (class-major, unchecked) = functional's value and grad, scores untouched."""
    value_t, grad_t = LOSSES_T[name]
    loss = LOSSES[name]
    o = torch.randn(37, 10, dtype=dtype) * 5
    y = torch.randint(0, 10, (37,))
    o_t = o.t().contiguous()
    before = o_t.clone()
    torch.testing.assert_close(value_t(o_t, y), loss.value(o, y))
    g = grad_t(o_t, y)
    torch.testing.assert_close(g.t(), loss.grad(o, y))
    assert g.dtype == dtype
    assert torch.equal(o_t, before)  # the scores are never changed in place


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_score_store_folds_its_blocks_into_the_epochs_sums(loss):
    value_t = LOSSES_T[loss][0]
    batches = [torch.randn(3, k, dtype=torch.float64) for k in (2, 2, 3, 7, 1)]
    labels = torch.randint(0, 3, (15,))
    # (pieces of one size are folded together, as one (C, m, k) view)
    store = ScoreStore(3, torch.float64, labels, value_t, block=5)
    for b in batches:  # [2 2 | 3 | 7 | 1]: a batch never straddles two blocks
        view = store.next(b.shape[1])
        assert view.shape == b.shape
        view.copy_(b)
    o_t = torch.cat(batches, dim=1)
    expected = torch.stack([value_t(o_t, labels).sum(), (o_t.argmax(0) == labels).sum().double(),
                            torch.tensor(15.0, dtype=torch.float64)])
    torch.testing.assert_close(store.totals(), expected)
    assert store.data.numel() == 3 * 7  # one block, grown once for the batch larger than it
    empty = ScoreStore(4, torch.float32, labels[:0], value_t).totals()
    assert empty.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("spread", [1.0, 200.0])
def test_score_store_takes_the_cross_entropy_from_the_picked_probabilities(spread):
    """picked=True: the loss sum from the kept p_y (-log p_y) equals the exact logsumexp - o_y;
    a block where some p_y underflows (spread 200: p_y down to e^-400 = 0) is folded from its
    scores instead, still finite and exact."""
    value_t = LOSSES_T["ce"][0]
    g = torch.Generator().manual_seed(3)
    batches = [spread * torch.randn(4, k, generator=g) for k in (3, 3, 5, 2)]
    labels = torch.randint(0, 4, (13,), generator=g)
    store = ScoreStore(4, torch.float32, labels, value_t, block=6, picked=True)
    done = 0
    for b in batches:
        k = b.shape[1]
        store.next(k).copy_(b)
        store.pick(torch.softmax(b, dim=0), labels[done:done + k])
        done += k
    o_t = torch.cat(batches, dim=1)
    want = value_t(o_t.double(), labels).sum()
    got = store.totals()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[0], want, rtol=1e-5, atol=1e-4)
    assert got[1] == (o_t.argmax(0) == labels).sum() and got[2] == 13


def test_scratch_backward_is_autograd_of_the_loss():
    torch.manual_seed(0)
    model = ScratchSoftmaxRegression(*init_params(784, 10, seed=1))
    X, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    for name, loss in LOSSES.items():
        with torch.no_grad():
            o = model(X)
        model.backward(X, loss.grad(o, y))
        gW, gb = model.W.grad.clone(), model.b.grad.clone()
        model.W.grad = model.b.grad = None
        loss.value(model(X), y).sum().backward()
        torch.testing.assert_close(gW, model.W.grad, msg=name)
        torch.testing.assert_close(gb, model.b.grad, msg=name)
        model.W.grad = model.b.grad = None


def test_objective_gradient_is_autograd():
    W, b = init_params(20, 4, seed=2)
    W, b = W.double().requires_grad_(True), b.double().requires_grad_(True)
    X, y = torch.rand(50, 20, dtype=torch.float64), torch.randint(0, 4, (50,))
    for loss in LOSSES.values():
        value, dW, db = objective(W.detach(), b.detach(), X, y, loss, weight_decay=0.3)
        want = loss.value(X @ W + b, y).mean() + 0.15 * (W * W).sum()
        gW, gb = torch.autograd.grad(want, (W, b))
        torch.testing.assert_close(value, want.detach())
        torch.testing.assert_close(dW, gW)
        torch.testing.assert_close(db, gb)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_flat_objective_equals_the_objective(dtype, weighted, weight_decay):
    """flat_objective (class-major, flat parameters) = objective with the CE loss: value and
    gradient, with and without sample weights and weight decay."""
    g = torch.Generator().manual_seed(5)
    X = torch.randn(70, 9, generator=g, dtype=dtype)
    y = torch.randint(0, 4, (70,), generator=g)
    W, b = torch.randn(9, 4, generator=g, dtype=dtype), torch.randn(4, generator=g, dtype=dtype)
    sw = None
    if weighted:
        sw = torch.rand(70, generator=g, dtype=dtype)
        sw /= sw.sum()
    theta = torch.cat([W.reshape(-1), b])
    before = theta.clone()
    value, grad = flat_objective(theta, X, y, weight_decay, sw)
    want, dW, db = objective(W, b, X, y, LOSSES["ce"], weight_decay, sw)
    assert torch.equal(theta, before) and grad.dtype == dtype and grad.shape == theta.shape
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    assert value == pytest.approx(float(want), rel=tol.get("rtol", 1e-12))
    torch.testing.assert_close(grad, torch.cat([dW.reshape(-1), db]), **tol)


# ----------------------------------------------------------------------------- same start, same end


def test_scratch_and_concise_end_an_epoch_equal(data):
    train, test = data
    ends = []
    for impl in ("scratch", "concise"):
        s = Session(TrainConfig(impl=impl, epochs=1, batch_size=64, seed=7), train, test)
        s.train_one(0)
        ends.append(final_weights(s))
    (W1, b1), (W2, b2) = ends
    assert not torch.equal(W1, init_params(784, 10, 7)[0])  # it did train
    torch.testing.assert_close(W1, W2, rtol=0, atol=1e-5)
    torch.testing.assert_close(b1, b2, rtol=0, atol=1e-5)


def test_scratch_momentum_and_weight_decay_match_torch_sgd(data):
    """The scratch SGD (momentum, weight decay, folded into the backward) = torch.optim.SGD."""
    train, test = data
    config = {"epochs": 2, "batch_size": 64, "seed": 4, "momentum": 0.9, "weight_decay": 1e-3,
              "lr_schedule": "cosine", "lr": 0.05}
    ends = []
    for impl in ("scratch", "concise"):
        s = Session(TrainConfig(impl=impl, **config), train, test)
        s.fit()
        ends.append(final_weights(s))
    (W1, b1), (W2, b2) = ends
    torch.testing.assert_close(W1, W2, rtol=0, atol=1e-5)
    torch.testing.assert_close(b1, b2, rtol=0, atol=1e-5)


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 1e-3), (0.0, 1e-2)])
def test_fast_epoch_equals_the_plain_train_epoch(data, loss, momentum, weight_decay):
    """The contract of the tuned path: FastSGD's epochs = train.train_epoch with train.SGD on the
    plain model over the same batches (parameters, loss and accuracy), with the step fused into
    the backward matmul and with a hook between gradient and step."""
    train, _ = data
    lr = LOSSES[loss].default_lr
    plain = create_model("scratch", 784, 10, seed=1)
    updater = SGD(plain.parameters(), lr, momentum, weight_decay)
    want = [train_epoch(plain, train.batches(64, shuffle=True, seed=3, epoch=epoch), LOSSES[loss],
                        updater) for epoch in range(2)]
    for hook in (None, lambda flat, k: k):
        fast = create_model("scratch", 784, 10, seed=1)
        opt = FastSGD(fast, loss, lr, momentum, weight_decay)
        got = [opt.train_epoch(train.images, train.labels, 64, epoch_permutation(len(train), 3, epoch),
                               grad_hook=hook)
               for epoch in range(2)]
        for w_fast, w_plain in zip(weights(fast), weights(plain)):
            torch.testing.assert_close(w_fast, w_plain, rtol=0, atol=1e-5)
        for (loss_fast, acc_fast), (loss_plain, acc_plain) in zip(got, want):
            assert loss_fast == pytest.approx(loss_plain, rel=1e-5)
            assert acc_fast == pytest.approx(acc_plain, abs=2 / len(train))  # argmax near-ties


def test_grad_hook_sees_the_summed_gradient_and_sets_the_divisor(data):
    """The seam: the hook gets the batch's summed gradient (dW^T, db flattened) and its example
    count; what it returns divides the gradient (e.g. a global batch after an all-reduce)."""
    train, _ = data
    seen = []

    def hook(flat, k):
        seen.append((flat.clone(), k))
        return 2 * k  # as if another rank had the same examples

    model = create_model("scratch", 784, 10, seed=1)
    W0, b0 = (t.clone() for t in weights(model))
    order = torch.arange(64)
    first = train.subset(slice(0, 64))
    FastSGD(model, "ce", 0.1).train_epoch(first.images, first.labels, 64, order, grad_hook=hook)
    X, y = train.to_float(slice(0, 64)).reshape(64, -1), train.labels[:64]
    d = F.cross_entropy_grad(X @ W0 + b0, y)  # (64, 10)
    (flat, k), = seen
    assert k == 64
    torch.testing.assert_close(flat, torch.cat([(X.T @ d).t().reshape(-1), d.sum(0)]),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights(model)[0], W0 - 0.1 * (X.T @ d) / 128, rtol=0, atol=1e-6)


def test_fast_path_equals_the_plain_chapter_loop(data):
    """The session's scratch path (gradients by hand, fused loss) = autograd with sgd()."""
    train, test = data
    s = Session(TrainConfig(epochs=2, batch_size=50, seed=2), train, test)
    s.fit()
    W, b = init_params(784, 10, seed=2)
    W.requires_grad_(True)
    b.requires_grad_(True)
    for epoch in range(2):
        for X, y in train.batches(50, shuffle=True, seed=2, epoch=epoch):
            l = F.cross_entropy(X.reshape(-1, 784) @ W + b, y, reduction="none")
            l.sum().backward()
            sgd([W, b], 0.1, len(y))
    Ws, bs = final_weights(s)
    torch.testing.assert_close(Ws, W.detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(bs, b.detach(), rtol=0, atol=1e-5)


def test_train_epoch_takes_an_optimizer_or_an_updater(data):
    train, _ = data
    results = []
    for use_optimizer in (False, True):
        model = create_model("concise", 784, 10, seed=1)
        if use_optimizer:
            updater = torch.optim.SGD(model.parameters(), lr=0.1)
        else:
            params = list(model.parameters())

            def updater(batch_size, params=params):
                sgd(params, 0.1, batch_size)
        loss, acc = train_epoch(model, train.batches(100), LOSSES["ce"], updater)
        results.append((loss, acc, weights(model)[0].clone()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    torch.testing.assert_close(results[0][2], results[1][2], rtol=0, atol=1e-6)
    assert 0 < results[0][1] <= 1


def test_history_rows_and_seconds(data):
    train, test = data
    s = Session(TrainConfig(epochs=3, batch_size=64, val_split=100), train, test)
    seen = []
    history = s.fit(callbacks=[lambda h: seen.append(len(h))])
    assert seen == [1, 2, 3]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for row in history:
        assert {"epoch", "train_loss", "train_acc", "val_acc", "test_acc", "seconds"} <= set(row)
        assert row["seconds"] > 0 and 0 <= row["test_acc"] <= 1
    assert len(s.train) == 500 and len(s.val) == 100
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] == evaluate_accuracy(s.model, s.eval_batches(test))


def test_lbfgs_one_row_per_outer_step(data):
    train, test = data
    s = Session(TrainConfig(optimizer="lbfgs", epochs=3, weight_decay=1e-3, lbfgs_iters=5),
                train, test)
    history = s.fit()
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.5


def test_lr_schedules():
    c = TrainConfig(lr=0.2, epochs=8, lr_schedule="cosine")
    assert lr_at(c, 0) == pytest.approx(0.2) and lr_at(c, 4) == pytest.approx(0.1)
    s = TrainConfig(lr=0.2, epochs=8, lr_schedule="step")
    assert [round(lr_at(s, e), 6) for e in (0, 3, 4, 5, 6, 7)] == [0.2, 0.2, 0.02, 0.02, 0.002,
                                                                    0.002]
    assert TrainConfig(loss="mse").learning_rate == LOSSES["mse"].default_lr


def test_standardizer_matches_numpy(data):
    train, _ = data
    st = Standardizer.fit(train.images, chunk=128)
    x = train.images.double().numpy() / 255
    torch.testing.assert_close(st.mean, torch.from_numpy(x.mean(0)).float())
    std = x.std(0)
    std[std < 1e-3] = 1
    torch.testing.assert_close(st.std, torch.from_numpy(std).float())


def test_standardizer_on_pixel_counts_equals_it_on_scaled_pixels(data):
    """apply_counts_ (the 1/255 folded into the multiply-add) = the Standardizer of x / 255."""
    train, _ = data
    st = Standardizer.fit(train.images)
    counts = train.images[:50].unsqueeze(1).float()
    want = st(counts / 255)
    assert st.apply_counts_(counts) is counts
    torch.testing.assert_close(counts, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["standardizer", "callable"])
def test_fast_epoch_with_a_preparation_equals_the_plain_loop(data, kind):
    """A Standardizer, folded into the uint8 conversion, or any other in-place preparation of the
    [0, 1] batches: the same parameters as the plain loop that prepares each batch."""
    train, _ = data
    st = Standardizer.fit(train.images)
    prepare = st if kind == "standardizer" else (lambda X: X.sub_(0.5))
    plain = create_model("scratch", 784, 10, seed=2)
    fast = create_model("scratch", 784, 10, seed=2)
    updater = SGD(plain.parameters(), 0.05, 0.9)
    opt = FastSGD(fast, "ce", 0.05, 0.9)
    for epoch in range(2):
        batches = train.batches(64, shuffle=True, seed=5, epoch=epoch)
        want = train_epoch(plain, ((prepare(X), y) for X, y in batches), LOSSES["ce"], updater)
        got = opt.train_epoch(train.images, train.labels, 64, epoch_permutation(len(train), 5, epoch),
                              prepare)
        assert got[0] == pytest.approx(want[0], rel=1e-5, abs=1e-6)
    assert not torch.equal(weights(fast)[0], init_params(784, 10, seed=2)[0])
    for w_fast, w_plain in zip(weights(fast), weights(plain)):
        torch.testing.assert_close(w_fast, w_plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bad", [{"impl": "x"}, {"lr": 0.0}, {"batch_size": 0},
                                 {"epochs": -1}, {"momentum": 1.0}, {"loss": "hinge"},
                                 {"lr_schedule": "linear"}, {"val_split": -2}])
def test_config_rejects_bad_values(bad):
    key = next(iter(bad))
    with pytest.raises(ConfigError, match=f"{key}=.* is not allowed"):
        TrainConfig(**bad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_epoch_on_float_features_equals_the_plain_loop(dtype):
    """Features (N, D) of any float dtype, not only uint8 images: same parameters as the plain
    loop over the same batches."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(300, 12, generator=g, dtype=dtype), torch.randint(0, 3, (300,), generator=g)
    W0, b0 = (t.to(dtype) for t in init_params(12, 3, seed=4))
    plain, fast = ScratchSoftmaxRegression(W0, b0), ScratchSoftmaxRegression(W0, b0)
    updater = SGD(plain.parameters(), 0.1, 0.9)
    opt = FastSGD(fast, "ce", 0.1, 0.9)
    for epoch in range(2):
        order = epoch_permutation(300, 1, epoch)
        train_epoch(plain, [(X[i], y[i]) for i in order.split(32)], LOSSES["ce"], updater)
        opt.train_epoch(X, y, 32, order)
    for w_fast, w_plain in zip(weights(fast), weights(plain)):
        assert w_fast.dtype == dtype
        torch.testing.assert_close(w_fast, w_plain, rtol=0, atol=1e-5)
