"""d2l-en 1.x's object-oriented API in softmaxlab.d2l: behaviour, data order, live figures."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from softmaxlab import d2l
from softmaxlab.d2l import devices, figures
from test_d2l import notebook  # noqa: F401 (the fixture: pretend to be in Jupyter)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    d2l.plt.close("all")


@pytest.fixture
def figures_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where d2l's PNGs go in this test (``$SOFTMAXLAB_FIGURES``), fresh and empty."""
    folder = tmp_path / "figures"
    monkeypatch.setenv("SOFTMAXLAB_FIGURES", str(folder))
    monkeypatch.delenv("SOFTMAXLAB_ANIMATOR_PNG", raising=False)
    return folder


@pytest.fixture
def tiny_env(tiny_idx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOFTMAXLAB_DATA", str(tiny_idx_dir))
    monkeypatch.setenv("SOFTMAXLAB_OFFLINE", "1")
    return tiny_idx_dir


@pytest.fixture
def png_writes(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every PNG write of d2l's figures: (path, [number of points of each line])."""
    writes: list = []
    write = figures.write_png

    def counting(fig, path):
        writes.append((path, [len(line.get_xdata()) for ax in fig.axes for line in ax.lines]))
        write(fig, path)

    monkeypatch.setattr(figures, "write_png", counting)
    return writes


# --------------------------------------------------------------------------- utilities


def test_save_hyperparameters_saves_the_callers_locals():
    class Net(d2l.HyperParameters):
        def __init__(self, a, b=2, _hidden=3, skip=4):
            c = a + b  # a local made before the call is saved too, as in the book
            self.save_hyperparameters(ignore=["skip"])
            self.total = c

    net = Net(1)
    assert net.hparams == {"a": 1, "b": 2, "c": 3}
    assert (net.a, net.b, net.c) == (1, 2, 3)
    assert not hasattr(net, "skip") and not hasattr(net, "_hidden")


def test_save_hyperparameters_in_a_module_hierarchy():
    class Model(d2l.Module):
        def __init__(self, width, lr):
            super().__init__(plot_train_per_epoch=4)
            self.save_hyperparameters()

    model = Model(width=8, lr=0.5)
    assert (model.width, model.lr, model.plot_train_per_epoch, model.plot_valid_per_epoch) == (
        8, 0.5, 4, 1)
    assert isinstance(model.board, d2l.ProgressBoard) and isinstance(model, nn.Module)


def test_add_to_class_reaches_instances_made_before():
    class A:
        pass

    a = A()

    @d2l.add_to_class(A)
    def twice(self, x):
        return 2 * x

    assert a.twice(4) == 8 and twice(None, 1) == 2  # the function keeps its name


# --------------------------------------------------------------------------- ProgressBoard


def test_progress_board_averages_each_full_group(figures_dir):
    board = d2l.ProgressBoard(display=False)
    for i in range(7):
        board.draw(i, 10.0 * i, "a", every_n=3)
        board.draw(i, float(i), "b")
    assert board.data["a"] == [(1.0, 10.0), (4.0, 40.0)]  # the 7th point waits for 2 more
    assert [p.x for p in board.data["b"]] == list(range(7))
    assert board.fig is None and not figures_dir.exists()  # display=False draws nothing


def test_progress_board_from_a_script_is_rate_limited_and_flushed(figures_dir, png_writes,
                                                                 monkeypatch, capsys):
    monkeypatch.setattr(figures, "REDRAW_SECONDS", 3600.0)
    board = d2l.ProgressBoard(xlabel="step")
    for i in range(200):  # a draw per batch
        board.draw(i, 1.0 / (i + 1), "loss")
    path = figures_dir / "progress_board.png"
    assert png_writes == [(path, [1])]  # the first point at once, the rest later
    board.flush()
    assert png_writes[-1] == (path, [200]) and len(png_writes) == 2
    board.flush()  # nothing new: no write
    assert len(png_writes) == 2
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert capsys.readouterr().out.count(str(path)) == 1
    line = board.fig.axes[0].lines[0]
    assert list(line.get_xdata()) == list(range(200)) and board.fig.axes[0].get_xlabel() == "step"


def test_progress_board_flushes_at_exit(tmp_path):
    """A script that ends right after drawing still leaves the final state in the PNG."""
    script = (
        "from softmaxlab import d2l\n"
        "from softmaxlab.d2l import figures\n"
        "figures.REDRAW_SECONDS = 3600\n"
        "write = figures.write_png\n"
        "def counting(fig, path):\n"
        "    print('WRITE', len(fig.axes[0].lines[0].get_xdata()), flush=True)\n"
        "    write(fig, path)\n"
        "figures.write_png = counting\n"
        "board = d2l.ProgressBoard()\n"
        "for i in range(50):\n"
        "    board.draw(i, i * i, 'sq', every_n=5)\n")
    env = {"MPLBACKEND": "Agg", "SOFTMAXLAB_FIGURES": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("WRITE")] == [
        "WRITE 1", "WRITE 10"]
    assert (tmp_path / "progress_board.png").read_bytes().startswith(PNG_MAGIC)


def test_progress_board_in_jupyter_displays_inline(notebook, figures_dir, monkeypatch):  # noqa: F811
    monkeypatch.setattr(figures, "REDRAW_SECONDS", 3600.0)
    board = d2l.ProgressBoard()
    for i in range(4):
        board.draw(i, float(i), "x", every_n=2)
    assert notebook == [("formats", ("svg",)), ("display", board.fig), ("clear_output", True)]
    # the lines are kept up to date for the inline backend's picture at the end of the cell
    assert len(board.fig.axes[0].lines[0].get_xdata()) == 2
    board.flush()
    assert notebook[-2:] == [("display", board.fig), ("clear_output", True)]
    assert not figures_dir.exists()


# --------------------------------------------------------------------------- training


def test_trainer_fits_linear_regression_from_scratch_and_concise(figures_dir, png_writes):
    torch.manual_seed(0)
    data = d2l.SyntheticRegressionData(w=torch.tensor([2.0, -3.4]), b=4.2)
    assert (data.X.shape, data.y.shape, data.batch_size) == ((2000, 2), (2000, 1), 32)
    for model in (d2l.LinearRegressionScratch(2, lr=0.03), d2l.LinearRegression(lr=0.03)):
        trainer = d2l.Trainer(max_epochs=3)
        trainer.fit(model, data)
        w, b = model.get_w_b() if hasattr(model, "net") else (model.w, model.b)
        w, b = w.detach(), b.detach()
        assert float((w.reshape(-1) - data.w).abs().max()) < 0.3
        assert float((b - data.b).abs().max()) < 0.3
        assert (trainer.num_train_batches, trainer.num_val_batches) == (32, 32)
        assert [len(model.board.data[k]) for k in ("train_loss", "val_loss")] == [6, 3]
        assert model.board.xlim == [0, 3] and model.trainer is trainer
        # fit ends by showing the board's final state
        assert png_writes[-1][1] == [6, 3]


def test_linear_regression_starts_from_the_books_init():
    torch.manual_seed(0)
    model = d2l.LinearRegression(lr=0.1)
    model(torch.ones(4, 5000))
    w, b = model.get_w_b()
    assert w.shape == (1, 5000) and 0.009 < float(w.std()) < 0.011 and float(b) == 0.0
    assert not model.net._forward_pre_hooks  # initialised once


def test_fit_calls_replaced_methods_through_the_class(monkeypatch, figures_dir):
    calls = []
    monkeypatch.setattr(d2l.Trainer, "prepare_batch",
                        lambda self, batch: calls.append("batch") or batch)
    fit_epoch = d2l.Trainer.fit_epoch

    def counted(self):
        calls.append("epoch")
        fit_epoch(self)

    monkeypatch.setattr(d2l.Trainer, "fit_epoch", counted)
    data = d2l.SyntheticRegressionData(w=torch.tensor([1.0]), b=0.0, num_train=64, num_val=32)
    d2l.Trainer(max_epochs=2).fit(d2l.LinearRegressionScratch(1, lr=0.1), data)
    assert calls == (["epoch"] + ["batch"] * 3) * 2


def test_training_runs_with_one_torch_thread_then_restores_the_count(monkeypatch):
    seen = []
    monkeypatch.setattr(d2l.Trainer, "fit_epoch", lambda self: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = d2l.SyntheticRegressionData(w=torch.tensor([1.0]), b=0.0, num_train=8, num_val=8)
        d2l.Trainer(max_epochs=2).fit(d2l.LinearRegressionScratch(1, lr=0.1), data)
        assert seen == [1, 1] and torch.get_num_threads() == 2
        monkeypatch.setattr(devices, "TRAINING_THREADS", None)  # torch's own setting
        d2l.Trainer(max_epochs=1).fit(d2l.LinearRegressionScratch(1, lr=0.1), data)
        assert seen[-1] == 2
    finally:
        torch.set_num_threads(before)


def test_clip_gradients_caps_the_global_norm():
    model = nn.Linear(3, 1)
    model.weight.grad = torch.full((1, 3), 4.0)
    model.bias.grad = torch.full((1,), 4.0)  # global norm 8
    d2l.Trainer(max_epochs=1).clip_gradients(2.0, model)
    norm = torch.sqrt(model.weight.grad.pow(2).sum() + model.bias.grad.pow(2).sum())
    assert float(norm) == pytest.approx(2.0)
    d2l.Trainer(max_epochs=1).clip_gradients(5.0, model)  # under the cap: unchanged
    assert float(model.bias.grad) == pytest.approx(1.0)


def test_trainer_without_gpus_keeps_batches_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    trainer = d2l.Trainer(max_epochs=1, num_gpus=2)
    assert trainer.gpus == [] and trainer.gradient_clip_val == 0
    batch = [torch.ones(2)]
    assert trainer.prepare_batch(batch) is batch


def test_sgd_steps_and_zeroes():
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    optimizer = d2l.SGD([p], lr=0.5)
    p.grad = torch.tensor([2.0, -2.0])
    with torch.no_grad():
        optimizer.step()
    assert p.tolist() == [0.0, 3.0]
    optimizer.zero_grad()
    assert p.grad.tolist() == [0.0, 0.0]


def test_classifier_accuracy_loss_and_validation_step():
    model = d2l.Classifier()
    Y_hat = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    Y = torch.tensor([0, 1, 1, 1])
    assert float(model.accuracy(Y_hat, Y)) == 0.75
    assert model.accuracy(Y_hat, Y, averaged=False).tolist() == [1.0, 1.0, 0.0, 1.0]
    torch.testing.assert_close(model.loss(Y_hat, Y), F.cross_entropy(Y_hat, Y))
    torch.testing.assert_close(model.loss(Y_hat, Y, averaged=False),
                               F.cross_entropy(Y_hat, Y, reduction="none"))
    model.net = nn.Identity()
    model.trainer = types.SimpleNamespace(epoch=0, num_val_batches=1)
    model.board.display = False
    model.validation_step((Y_hat, Y))
    assert float(model.board.data["val_acc"][0].y) == 0.75
    assert float(model.board.data["val_loss"][0].y) == pytest.approx(
        float(F.cross_entropy(Y_hat, Y)))


def test_apply_init_shapes_lazy_layers_then_initialises(capsys):
    model = d2l.SoftmaxRegression(num_outputs=10, lr=0.1)

    def zero(m):
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)

    model.apply_init([torch.ones(2, 1, 28, 28)], zero)
    assert model.net[1].weight.shape == (10, 784) and not model.net[1].weight.any()
    model.layer_summary((2, 1, 28, 28))
    out = capsys.readouterr().out
    assert "Flatten output shape:\t torch.Size([2, 784])" in out
    assert "Linear output shape:\t torch.Size([2, 10])" in out


def test_softmax_regression_learns_tiny_fashion_mnist(tiny_env, figures_dir):
    torch.manual_seed(0)
    data = d2l.FashionMNIST(batch_size=16)
    model = d2l.SoftmaxRegression(num_outputs=10, lr=0.5)
    d2l.Trainer(max_epochs=5).fit(model, data)
    acc = float(model.board.data["val_acc"][-1].y)
    assert acc > 0.6  # chance is 0.1
    assert isinstance(model.configure_optimizers(), torch.optim.SGD)
    assert (figures_dir / "progress_board.png").read_bytes().startswith(PNG_MAGIC)


# --------------------------------------------------------------------------- data


def test_fashion_mnist_batches_as_the_books_dataloaders(tiny_env, figures_dir):
    data = d2l.FashionMNIST(batch_size=32)
    assert (len(data.train), len(data.val)) == (120, 60)
    assert (data.root, data.num_workers, data.resize) == ("../data", 4, (28, 28))
    X, y = next(iter(data.train_dataloader()))
    assert (X.shape, X.dtype, y.shape, y.dtype) == (
        (32, 1, 28, 28), torch.float32, (32,), torch.int64)
    assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0
    assert (len(data.train_dataloader()), len(data.val_dataloader())) == (4, 2)
    image, label = data.train[0]  # as torchvision's dataset with ToTensor
    assert image.shape == (1, 28, 28) and isinstance(label, int)
    assert data.text_labels(torch.tensor([0, 9])) == ["t-shirt", "ankle boot"]
    val = torch.cat([y for _, y in data.val_dataloader()])
    assert val.tolist() == [i % 10 for i in range(60)]  # file order
    big = d2l.FashionMNIST(batch_size=8, resize=(32, 40))
    X, _ = next(iter(big.val_dataloader()))
    assert X.shape == (8, 1, 32, 40) and 0.0 <= float(X.min()) and float(X.max()) <= 1.0
    data.visualize(next(iter(data.val_dataloader())))
    assert (figures_dir / "show_images.png").read_bytes().startswith(PNG_MAGIC)


def test_loaders_give_the_dataloaders_batches_under_the_same_seed(tiny_env):
    """Same seed, same batches and the same generator state after, as torch's DataLoader."""
    def epochs(loader):
        batches = [[t.clone() for t in b] for _ in range(2) for b in loader]
        return batches, torch.rand(3)

    data = d2l.FashionMNIST(batch_size=25)
    X, y = torch.rand(50, 3), torch.arange(50)
    cases = [
        (data.train_dataloader,
         lambda: torch.utils.data.DataLoader(data.train, 25, shuffle=True, num_workers=0)),
        (data.val_dataloader, lambda: torch.utils.data.DataLoader(data.val, 25, shuffle=False)),
        (lambda: d2l.load_array((X, y), 7),
         lambda: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), 7,
                                             shuffle=True)),
        (lambda: d2l.load_data_fashion_mnist(25)[0],
         lambda: torch.utils.data.DataLoader(data.train, 25, shuffle=True)),
    ]
    for ours, theirs in cases:
        torch.manual_seed(7)
        mine, after_mine = epochs(ours())
        torch.manual_seed(7)
        ref, after_ref = epochs(theirs())
        assert len(mine) == len(ref)
        for a, b in zip(mine, ref):
            assert len(a) == len(b) and all(torch.equal(s, t) for s, t in zip(a, b))
        assert torch.equal(after_mine, after_ref)


def test_batches_are_fresh_tensors(tiny_env):
    data = d2l.FashionMNIST(batch_size=10)
    _, y = next(iter(data.val_dataloader()))
    y.fill_(9)
    _, again = next(iter(data.val_dataloader()))
    assert again.tolist() == list(range(10))


def test_get_tensorloader_slices_and_shuffles():
    class Data(d2l.DataModule):
        def __init__(self):
            super().__init__()
            self.batch_size = 4
            self.X, self.y = torch.arange(20.0).reshape(10, 2), torch.arange(10)

        def get_dataloader(self, train):
            i = slice(0, 6) if train else slice(6, None)
            return self.get_tensorloader((self.X, self.y), train, i)

    data = Data()
    assert [y.tolist() for _, y in data.val_dataloader()] == [[6, 7, 8, 9]]
    train = [y for _, y in data.train_dataloader()]
    assert [len(y) for y in train] == [4, 2] and sorted(torch.cat(train).tolist()) == list(range(6))


def test_fashion_mnist_rejects_a_bad_resize(tiny_env):
    with pytest.raises(ValueError, match="resize="):
        d2l.FashionMNIST(resize=(0, 28))


# --------------------------------------------------------------------------- figures


def test_plot_writes_one_png_per_call_from_a_script(figures_dir, capsys):
    x = torch.arange(0, 3, 0.1)
    d2l.plot(x, [x ** 2, 2 * x], "x", "f(x)", legend=["f", "g"])
    d2l.plot(x, x.sin())
    for name in ("plot.png", "plot-2.png"):
        assert (figures_dir / name).read_bytes().startswith(PNG_MAGIC)
    out = capsys.readouterr().out
    assert out.count(f"{figures_dir / 'plot.png'} ") == 1
    assert out.count(f"{figures_dir / 'plot-2.png'} ") == 1
    _, ax = d2l.plt.subplots()
    d2l.plot([1, 2, 3], axes=ax)  # into the reader's own axes
    assert len(ax.lines) == 1 and list(ax.lines[0].get_ydata()) == [1, 2, 3]


def test_show_weights_draws_one_image_per_class(figures_dir):
    W = torch.zeros(784, 10)
    W[:392, 3] = 2.0  # class 3: the top half for it
    W[392:, 3] = -1.0
    for model in (W, W.T, types.SimpleNamespace(W=W)):
        fig = d2l.show_weights(model)
        images = [ax.images[0] for ax in fig.axes if ax.images]
        assert len(images) == 10
        assert [ax.get_title() for ax in fig.axes if ax.images][:4] == [
            "t-shirt", "trouser", "pullover", "dress"]
        shown = images[3].get_array()
        assert shown.shape == (28, 28) and shown[0, 0] == 2.0 and shown[-1, -1] == -1.0
        assert images[3].norm.vmin == -2.0 and images[3].norm.vmax == 2.0  # centred on 0
        assert images[3].get_cmap().name == "RdBu_r"
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    fig = d2l.show_weights(net, titles=list("abcdefghij"))
    shown = [ax for ax in fig.axes if ax.images][1].images[0].get_array()
    torch.testing.assert_close(torch.as_tensor(shown.data).reshape(-1),
                               net[1].weight[1].detach().double())
    assert (figures_dir / "weights.png").is_file() and (figures_dir / "weights-4.png").is_file()
    with pytest.raises(ValueError, match="image_shape"):
        d2l.show_weights(torch.zeros(100, 10))
    with pytest.raises(TypeError, match="nn.Linear"):
        d2l.show_weights(nn.ReLU())
