"""Tests for softmaxlab.d2l: the chapter's names, signatures and behaviour, in Jupyter or not."""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import matplotlib.pyplot
import pytest
import torch
from torch import nn

from softmaxlab import d2l
from softmaxlab.d2l import ch3 as d2l_ch3
from softmaxlab.data import DataNotFoundError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chapter3_softmax_regression.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The signatures of chapter 3's d2l functions and classes (classes: their constructor).
CHAPTER_SIGNATURES = {
    "load_data_fashion_mnist": "(batch_size, resize=None)",
    "get_fashion_mnist_labels": "(labels)",
    "show_images": "(imgs, num_rows, num_cols, titles=None, scale=1.5)",
    "softmax": "(X)",
    "cross_entropy": "(y_hat, y)",
    "accuracy": "(y_hat, y)",
    "evaluate_accuracy": "(net, data_iter)",
    "Accumulator": "(n)",
    "Animator": "(xlabel=None, ylabel=None, legend=None, xlim=None, ylim=None, "
                "xscale='linear', yscale='linear', fmts=('-', 'm--', 'g-.', 'r:'), nrows=1, "
                "ncols=1, figsize=(3.5, 2.5))",
    "Timer": "()",
    "sgd": "(params, lr, batch_size)",
    "train_epoch_ch3": "(net, train_iter, loss, updater)",
    "train_ch3": "(net, train_iter, test_iter, loss, num_epochs, updater)",
    "predict_ch3": "(net, test_iter, n=6)",
    "get_dataloader_workers": "()",
    "use_svg_display": "()",
    "set_axes": "(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend)",
    "set_figsize": "(figsize=(3.5, 2.5))",
}
METHODS = {"Animator": {"add": "(self, x, y)"},
           "Accumulator": {"add": "(self, *args)", "reset": "(self)", "__getitem__": "(self, idx)"},
           "Timer": {m: "(self)" for m in ("start", "stop", "avg", "sum", "cumsum")}}


def signature(obj) -> str:
    """``inspect.signature`` without annotations, e.g. ``(a, b=1)``."""
    parts = []
    for p in inspect.signature(obj).parameters.values():
        name = "*" + p.name if p.kind is p.VAR_POSITIONAL else p.name
        parts.append(name if p.default is p.empty else f"{name}={p.default!r}")
    return "(" + ", ".join(parts) + ")"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    d2l.plt.close("all")


@pytest.fixture
def figures_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh folder (where show_images / predict_ch3 / Animator PNGs go); returned."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOFTMAXLAB_ANIMATOR_PNG", raising=False)
    return tmp_path


@pytest.fixture
def real_env(real_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOFTMAXLAB_DATA", str(real_data_dir))
    monkeypatch.setenv("SOFTMAXLAB_OFFLINE", "1")
    return real_data_dir


@pytest.fixture
def tiny_env(tiny_idx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOFTMAXLAB_DATA", str(tiny_idx_dir))
    monkeypatch.setenv("SOFTMAXLAB_OFFLINE", "1")
    return tiny_idx_dir


@pytest.fixture
def notebook(monkeypatch: pytest.MonkeyPatch) -> list:
    """Pretend to run in an IPython kernel; returns the calls to IPython and matplotlib_inline."""
    calls: list = []
    shell = types.SimpleNamespace(kernel=object())
    display = types.ModuleType("IPython.display")
    display.display = lambda obj: calls.append(("display", obj))
    display.clear_output = lambda wait=False: calls.append(("clear_output", wait))
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    ipython.display = display
    ipython.version_info = (9, 0)  # matplotlib reads it when it makes its first canvas
    backend_inline = types.ModuleType("matplotlib_inline.backend_inline")
    backend_inline.set_matplotlib_formats = lambda *fmts: calls.append(("formats", fmts))
    inline = types.ModuleType("matplotlib_inline")
    inline.backend_inline = backend_inline
    for name, module in (("IPython", ipython), ("IPython.display", display),
                         ("matplotlib_inline", inline),
                         ("matplotlib_inline.backend_inline", backend_inline)):
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def scratch_model():
    """The chapter's from-scratch net and updater (lr 0.1), as section 3.6 writes them."""
    W = torch.normal(0, 0.01, size=(784, 10), requires_grad=True)
    b = torch.zeros(10, requires_grad=True)

    def net(X):
        return d2l.softmax(torch.matmul(X.reshape((-1, W.shape[0])), W) + b)

    def updater(batch_size):
        return d2l.sgd([W, b], 0.1, batch_size)

    return net, updater, [W, b]


def concise_model() -> tuple[nn.Module, torch.optim.Optimizer]:
    """The chapter's concise net and trainer, as section 3.7 writes them."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)

    net.apply(init_weights)
    return net, torch.optim.SGD(net.parameters(), lr=0.1)


# --------------------------------------------------------------------------- names and signatures


@pytest.mark.parametrize("name", sorted(CHAPTER_SIGNATURES))
def test_chapter_names_have_the_chapters_signatures(name):
    assert name in d2l.__all__
    assert signature(getattr(d2l, name)) == CHAPTER_SIGNATURES[name]


@pytest.mark.parametrize("cls", sorted(METHODS))
def test_chapter_classes_have_the_chapters_methods(cls):
    for method, sig in METHODS[cls].items():
        assert signature(getattr(getattr(d2l, cls), method)) == sig


def test_plt_is_pyplot_and_no_worker_processes():
    assert d2l.plt is matplotlib.pyplot
    assert d2l.get_dataloader_workers() == 0


# --------------------------------------------------------------------------- the math


def test_softmax_is_the_chapters_naive_form():
    X = torch.normal(0, 1, (4, 5), generator=torch.Generator().manual_seed(0))
    P = d2l.softmax(X)
    torch.testing.assert_close(P.sum(1), torch.ones(4))
    torch.testing.assert_close(P, torch.softmax(X, dim=1))
    # exp(100) overflows float32: the chapter's form gives nan, as the book admits
    assert torch.isnan(d2l.softmax(torch.tensor([[100.0, 1.0, 2.0]]))).any()


def test_cross_entropy_picks_each_rows_true_class():
    y = torch.tensor([0, 2])
    y_hat = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
    torch.testing.assert_close(d2l.cross_entropy(y_hat, y),
                               torch.tensor([-math.log(0.1), -math.log(0.5)]))


def test_accuracy_counts_the_correct_predictions():
    y = torch.tensor([0, 2])
    y_hat = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
    assert d2l.accuracy(y_hat, y) == 1.0  # the book: accuracy(y_hat, y) / len(y) == 0.5
    assert d2l.accuracy(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]),
                        torch.tensor([0, 1, 1])) == 2.0


def test_accumulator_sums_and_resets():
    acc = d2l.Accumulator(3)
    acc.add(1, 2.5, 3)
    acc.add(torch.tensor(1.0), 0.5, 7)
    assert [acc[0], acc[1], acc[2]] == [2.0, 3.0, 10.0]
    acc.reset()
    assert [acc[i] for i in range(3)] == [0.0, 0.0, 0.0]


def test_timer_records_each_run(monkeypatch):
    clock = iter([10.0, 12.0, 12.5, 14.0])
    monkeypatch.setattr(d2l_ch3, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    timer = d2l.Timer()  # starts at 10
    assert timer.stop() == 2.0
    timer.start()
    assert timer.stop() == 1.5
    assert (timer.sum(), timer.avg(), timer.cumsum()) == (3.5, 1.75, [2.0, 3.5])


def test_get_fashion_mnist_labels():
    assert d2l.get_fashion_mnist_labels(torch.tensor([0, 9, 1])) == [
        "t-shirt", "ankle boot", "trouser"]
    assert d2l.get_fashion_mnist_labels([5, 6]) == ["sandal", "shirt"]


# --------------------------------------------------------------------------- data


def test_load_data_batches_like_the_books_dataloaders(tiny_env):
    train_iter, test_iter = d2l.load_data_fashion_mnist(32)
    assert (len(train_iter), len(test_iter)) == (4, 2)  # 120 and 60 examples
    X, y = next(iter(train_iter))
    assert (X.shape, X.dtype, y.shape, y.dtype) == (
        (32, 1, 28, 28), torch.float32, (32,), torch.int64)
    assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0
    assert sum(len(y) for _, y in test_iter) == 60


def test_load_data_shuffles_train_afresh_each_epoch_and_not_test(tiny_env):
    train_iter, test_iter = d2l.load_data_fashion_mnist(120)
    (_, y1), = list(train_iter)
    (_, y2), = list(train_iter)
    assert not torch.equal(y1, y2)
    assert torch.equal(torch.sort(y1).values, torch.sort(y2).values)
    tests = [torch.cat([y for _, y in test_iter]) for _ in range(2)]
    torch.testing.assert_close(tests[0], tests[1])
    torch.testing.assert_close(tests[0], torch.arange(60) % 10)  # file order


def test_load_data_shuffles_follow_torch_manual_seed(tiny_env):
    orders = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        train_iter, _ = d2l.load_data_fashion_mnist(120)
        orders.append(next(iter(train_iter))[1])
    assert torch.equal(orders[0], orders[1])
    assert not torch.equal(orders[0], orders[2])


def test_load_data_resize(tiny_env):
    train_iter, test_iter = d2l.load_data_fashion_mnist(32, resize=64)
    for loader in (train_iter, test_iter):
        X, y = next(iter(loader))
        assert (X.shape, X.dtype, y.dtype) == ((32, 1, 64, 64), torch.float32, torch.int64)
        assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0


def test_load_data_honours_softmaxlab_data(isolated_data_env, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SOFTMAXLAB_DATA", str(empty))
    monkeypatch.setenv("SOFTMAXLAB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match=str(empty)):
        d2l.load_data_fashion_mnist(256)


def test_load_data_real_fashion_mnist(real_env):
    train_iter, test_iter = d2l.load_data_fashion_mnist(256)
    assert (len(train_iter.dataset), len(test_iter.dataset)) == (60000, 10000)
    assert (len(train_iter), len(test_iter)) == (235, 40)
    X, y = next(iter(test_iter))
    assert (X.shape, y.shape) == ((256, 1, 28, 28), (256,))
    assert d2l.get_fashion_mnist_labels(y[:3]) == ["ankle boot", "pullover", "trouser"]


# --------------------------------------------------------------------------- training


def test_train_epoch_ch3_scratch_and_concise_paths_take_the_same_steps():
    """A function net + summed loss + updater(batch_size), and an nn.Module + mean loss +
    optimizer, from the same start, end at the same parameters and report the same numbers."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(64, 1, 4, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    batches = [(X[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    W0 = torch.normal(0, 0.5, (16, 3), generator=g)

    W, b = W0.clone().requires_grad_(True), torch.zeros(3, requires_grad=True)

    def net(X):
        return d2l.softmax(X.reshape(-1, 16) @ W + b)

    scratch = d2l.train_epoch_ch3(net, batches, d2l.cross_entropy,
                                  lambda n: d2l.sgd([W, b], 0.5, n))

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        model[1].weight.copy_(W0.T)
        model[1].bias.zero_()
    first = nn.functional.cross_entropy(model(X[:16]), y[:16]).item()
    concise = d2l.train_epoch_ch3(model, batches, nn.CrossEntropyLoss(reduction="none"),
                                  torch.optim.SGD(model.parameters(), lr=0.5))

    assert scratch == pytest.approx(concise, rel=1e-5)
    torch.testing.assert_close(model[1].weight.detach().T, W.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].bias.detach(), b.detach(), rtol=1e-5, atol=1e-6)
    # one batch: the epoch's loss is that batch's mean loss before the step
    loss, acc = d2l.train_epoch_ch3(model, [(X[:16], y[:16])],
                                    nn.CrossEntropyLoss(reduction="none"),
                                    torch.optim.SGD(model.parameters(), lr=0.0))
    assert loss == pytest.approx(nn.functional.cross_entropy(model(X[:16]), y[:16]).item())
    assert first != pytest.approx(loss)  # the epoch moved the parameters
    assert acc == (model(X[:16]).argmax(1) == y[:16]).float().mean().item()


def test_train_ch3_rejects_no_epochs():
    with pytest.raises(ValueError, match="num_epochs=0"):
        d2l.train_ch3(None, [], [], None, 0, None)


def test_train_ch3_from_scratch_reaches_the_chapters_numbers(real_env, figures_here, capsys):
    torch.manual_seed(0)
    train_iter, test_iter = d2l.load_data_fashion_mnist(256)
    net, updater, _ = scratch_model()
    d2l.train_ch3(net, train_iter, test_iter, d2l.cross_entropy, 10, updater)  # its asserts pass
    assert d2l.evaluate_accuracy(net, test_iter) > 0.8
    out = capsys.readouterr().out
    assert out.count(str(figures_here / "animator.png")) == 1
    assert out.count("epoch ") == 10 and "epoch 10: train loss 0.4" in out
    d2l.predict_ch3(net, test_iter)
    assert (figures_here / "predict_ch3.png").read_bytes().startswith(PNG_MAGIC)


def test_train_ch3_concise_reaches_the_chapters_numbers(real_env, figures_here):
    torch.manual_seed(0)
    train_iter, test_iter = d2l.load_data_fashion_mnist(256)
    net, trainer = concise_model()
    loss = nn.CrossEntropyLoss(reduction="none")
    d2l.train_ch3(net, train_iter, test_iter, loss, 10, trainer)
    assert d2l.evaluate_accuracy(net, test_iter) > 0.8


@pytest.mark.filterwarnings("ignore:Attempting to set identical low and high xlims")
def test_train_ch3_one_epoch_fails_the_chapters_train_loss_check(real_env, figures_here):
    # the first epoch ends near 0.79, above the chapter's 0.5 (and the book's xlim=[1, 1] warns)
    train_iter, test_iter = d2l.load_data_fashion_mnist(256)
    net, updater, _ = scratch_model()
    with pytest.raises(AssertionError, match="train_loss="):
        d2l.train_ch3(net, train_iter, test_iter, d2l.cross_entropy, 1, updater)


# --------------------------------------------------------------------------- figures


def test_animator_outside_jupyter_keeps_a_png_and_says_where_once(tmp_path, monkeypatch,
                                                                  capsys):
    path = tmp_path / "curves" / "live.png"
    monkeypatch.setenv("SOFTMAXLAB_ANIMATOR_PNG", str(path))
    animator = d2l.Animator(xlabel="epoch", xlim=[1, 3], legend=["loss", "acc"])
    sizes = []
    for epoch, values in enumerate([(0.9, 0.5), (0.7, None), (0.6, 0.8)], start=1):
        animator.add(epoch, values)
        sizes.append(path.stat().st_size)
        assert path.read_bytes().startswith(PNG_MAGIC)
    out = capsys.readouterr().out
    assert out.count(str(path)) == 1
    assert "epoch 2: loss 0.7000\n" in out and "epoch 3: loss 0.6000, acc 0.8000\n" in out
    assert animator.X == [[1, 2, 3], [1, 3]] and animator.Y == [[0.9, 0.7, 0.6], [0.5, 0.8]]
    assert [p.name for p in path.parent.iterdir()] == ["live.png"]  # no temp file left
    # the figure stays open for more points
    assert animator.fig.number in d2l.plt.get_fignums()

    second = d2l.Animator()
    second.add(1, 0.5)
    assert (tmp_path / "curves" / "live-2.png").is_file()
    assert "y0 0.5000" in capsys.readouterr().out


def test_animator_in_jupyter_displays_inline(notebook, figures_here, capsys):
    animator = d2l.Animator(legend=["a"])
    animator.add(1, 0.5)
    assert notebook == [("formats", ("svg",)), ("display", animator.fig),
                        ("clear_output", True)]
    assert list(figures_here.iterdir()) == []
    assert capsys.readouterr().out == ""


def test_show_images_outside_jupyter_saves_a_png(figures_here, capsys):
    imgs = torch.rand(5, 28, 28)
    axes = d2l.show_images(imgs, 2, 3, titles=["a", "b", "c", "d", "e"])
    assert len(axes) == 6 and axes[1].get_title() == "b"
    assert (figures_here / "show_images.png").read_bytes().startswith(PNG_MAGIC)
    d2l.show_images(imgs, 1, 5)
    assert (figures_here / "show_images-2.png").is_file()
    out = capsys.readouterr().out
    assert out.count("show_images.png") == 1 and out.count("show_images-2.png") == 1


def test_show_images_in_jupyter_writes_nothing(notebook, figures_here):
    d2l.show_images(torch.rand(2, 28, 28), 1, 2)
    assert list(figures_here.iterdir()) == []


def test_predict_ch3_titles_true_then_predicted(figures_here, capsys):
    X = torch.rand(8, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])

    def net(X):  # predicts class 1 for everything
        return torch.nn.functional.one_hot(torch.ones(len(X), dtype=torch.long), 10).float()

    d2l.predict_ch3(net, [(X, y)], n=4)
    titles = [ax.get_title() for ax in d2l.plt.gcf().axes]
    assert titles == ["t-shirt\ntrouser", "trouser\ntrouser", "pullover\ntrouser",
                      "dress\ntrouser"]
    assert (figures_here / "predict_ch3.png").read_bytes().startswith(PNG_MAGIC)
    assert capsys.readouterr().out.count("predict_ch3.png") == 1


def test_set_axes_and_set_figsize():
    _, ax = d2l.plt.subplots()
    ax.plot([1, 10], [0.2, 0.5])
    d2l.set_axes(ax, "x", "y", [1, 10], [0.1, 1], "log", "linear", ["a"])
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_xscale(), ax.get_yscale()) == (
        "x", "y", "log", "linear")
    assert ax.get_xlim() == pytest.approx((1, 10)) and ax.get_ylim() == pytest.approx((0.1, 1))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a"]
    with d2l.plt.rc_context():
        d2l.set_figsize((5, 4))
        assert list(d2l.plt.rcParams["figure.figsize"]) == [5, 4]


# --------------------------------------------------------------------------- the example script


def test_example_script_runs_the_chapter_end_to_end(real_data_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SOFTMAXLAB_ANIMATOR_PNG"}
    env.update(MPLBACKEND="Agg", SOFTMAXLAB_DATA=str(real_data_dir), SOFTMAXLAB_OFFLINE="1",
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name in ("show_images.png", "animator.png", "predict_ch3.png", "animator-2.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)
        assert out.count(str(tmp_path / name)) == 1
    assert out.count("epoch 10: ") == 2
    assert "torch.Size([32, 1, 64, 64]) torch.float32 torch.Size([32]) torch.int64" in out
