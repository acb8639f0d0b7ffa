"""The names chapter 3 of *Dive into Deep Learning* takes from ``d2l``, over softmaxlab's code.

Change the chapter's import line ``from d2l import torch as d2l`` to ``from softmaxlab import d2l``
and its code runs as written: the dataset, softmax regression from scratch and the concise version.
The names keep the book's signatures and behaviour (d2l 1.0 dropped ``train_ch3`` and friends;
they are here). What differs, and why:

- Data: ``load_data_fashion_mnist`` finds the files the way ``softmaxlab.data`` does
  (``$SOFTMAXLAB_DATA``, the user cache, Debian's ``/usr/share/datasets/fashion-mnist``, the book's
  ``../data``, else a verified download) and serves batches from tensors in memory, in this
  process: no torchvision, no worker processes, an epoch reads in a fraction of a second. The
  files are read once per process. The training shuffle follows ``torch.manual_seed`` like a
  DataLoader's, with a fresh order each epoch.
- Figures in Jupyter (an IPython kernel) are drawn inline as in the book, the ``Animator``
  redrawn in place. Anywhere else (a script, a terminal, PyCharm), where the book's ``Animator``
  shows nothing, each figure is also written to a PNG in the current folder and its path is
  printed once: ``show_images.png``, ``predict_ch3.png``, and ``animator.png`` (or
  ``$SOFTMAXLAB_ANIMATOR_PNG``), which the ``Animator`` rewrites after every ``add`` while it
  prints that point's values as one line. A second figure of the same kind in one process gets
  ``-2``, a third ``-3``, ..., so none overwrites one you have not looked at. No window is opened
  (a script would stop until it is closed); the figures stay open, so ``d2l.plt.show()`` at the
  end of a script shows them under a GUI backend.
- This module keeps the chapter's prints and its asserts (``train_ch3`` ends by asserting the
  chapter's numbers); the rest of softmaxlab returns values instead.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from . import functional as F
from . import train as _train
from .data import BatchLoader, ImageDataset, get_spec, load_dataset, locate, text_labels
from .errors import ConfigError
from .fsutil import atomic_path
from .plots import plt
from .plots import show_images as _show_images
from .train import Accumulator, accuracy, sgd

__all__ = [
    "Accumulator",
    "Animator",
    "Timer",
    "accuracy",
    "cross_entropy",
    "evaluate_accuracy",
    "get_dataloader_workers",
    "get_fashion_mnist_labels",
    "load_data_fashion_mnist",
    "plt",
    "predict_ch3",
    "set_axes",
    "set_figsize",
    "sgd",
    "show_images",
    "softmax",
    "train_ch3",
    "train_epoch_ch3",
    "use_svg_display",
]

# --------------------------------------------------------------------------- data


def get_dataloader_workers() -> int:
    """0: batches are sliced from tensors in memory, in this process (the book's 4 workers only
    add start-up time here, and break on 2-core machines, Windows and macOS)."""
    return 0


@functools.lru_cache(maxsize=1)
def _read_fashion_mnist(folder: str, stamp: tuple) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) from ``folder``; ``stamp`` (sizes and mtimes) re-reads changed files."""
    return load_dataset("fashion-mnist", data_dir=folder)


def load_data_fashion_mnist(batch_size: int, resize=None) -> tuple[BatchLoader, BatchLoader]:
    """(train_iter, test_iter): re-iterable loaders of batches X (B, 1, H, W), y (B,).

    X is float32 in [0, 1], y int64; H = W = 28, or ``resize`` (an int or (H, W); bilinear,
    antialiased). The training batches come in a fresh shuffled order each epoch: epoch k's order
    is drawn from ``torch.initial_seed()`` and k, so ``torch.manual_seed`` makes it reproducible
    and every loader made under one seed (the scratch and the concise model's) sees the same
    orders. The test batches keep file order.
    """
    paths = locate(get_spec("fashion-mnist"))
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths.values())
    train, test = _read_fashion_mnist(str(paths["train_images"].parent), stamp)
    resize = resize or None  # the book skips Resize for resize=0 too
    return (BatchLoader(train, batch_size, shuffle=True, seed=torch.initial_seed(), resize=resize),
            BatchLoader(test, batch_size, shuffle=False, resize=resize))


def get_fashion_mnist_labels(labels) -> list[str]:
    """Class indices (a tensor or a sequence of ints) -> their Fashion-MNIST names."""
    return text_labels(labels, get_spec("fashion-mnist").class_names)


# --------------------------------------------------------------------------- figures


def _in_notebook() -> bool:
    """True inside an IPython kernel (Jupyter, VS Code, Colab): figures display inline there."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


_pngs_written: dict[Path, int] = {}  # default PNG path -> figures given a path from it so far


def _next_png(default: str | os.PathLike) -> Path:
    """``default`` (resolved) for its first figure in this process, then stem-2.png, ..."""
    path = Path(default).resolve()
    n = _pngs_written[path] = _pngs_written.get(path, 0) + 1
    return path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")


def _write_png(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` via a temp file + rename, leaving it open for more drawing."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def _publish(fig, default: str, what: str) -> None:
    """Outside a notebook, write ``fig`` to the next PNG named after ``default``; say where."""
    if not _in_notebook():
        path = _next_png(default)
        _write_png(fig, path)
        print(f"d2l.{what}: figure saved to {path}")


def use_svg_display() -> None:
    """Inline figures as SVG in Jupyter, as the book does; outside Jupyter they are PNG files."""
    if _in_notebook():
        from matplotlib_inline import backend_inline

        backend_inline.set_matplotlib_formats("svg")


def set_figsize(figsize=(3.5, 2.5)) -> None:
    """Set matplotlib's default figure size (inches)."""
    use_svg_display()
    plt.rcParams["figure.figsize"] = figsize


def set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend) -> None:
    """Label, limit, scale and grid ``axes``; add ``legend`` (a list of names) if given."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xscale(xscale)
    axes.set_yscale(yscale)
    axes.set_xlim(xlim)
    axes.set_ylim(ylim)
    if legend:
        axes.legend(legend)
    axes.grid()


def show_images(imgs, num_rows, num_cols, titles=None, scale=1.5):
    """Images (N, H, W) (tensors, arrays or PIL) in a grid with optional titles; returns the axes.

    Outside Jupyter the grid is also saved to show_images.png (see the module docstring).
    """
    axes = _show_images(imgs, num_rows, num_cols, titles, scale)
    _publish(axes[0].figure, "show_images.png", "show_images")
    return axes


class Animator:
    """Curves that grow by one point per ``add(x, y)``: the book's live training plot.

    In Jupyter it redraws in place; elsewhere it rewrites a PNG (animator.png or
    ``$SOFTMAXLAB_ANIMATOR_PNG``) after every ``add``, says where once, and prints each point.
    """

    def __init__(self, xlabel=None, ylabel=None, legend=None, xlim=None, ylim=None,
                 xscale="linear", yscale="linear", fmts=("-", "m--", "g-.", "r:"), nrows=1,
                 ncols=1, figsize=(3.5, 2.5)) -> None:
        if legend is None:
            legend = []
        use_svg_display()
        self.fig, self.axes = plt.subplots(nrows, ncols, figsize=figsize)
        if nrows * ncols == 1:
            self.axes = [self.axes]
        self.config_axes = lambda: set_axes(self.axes[0], xlabel, ylabel, xlim, ylim, xscale,
                                            yscale, legend)
        self.X, self.Y, self.fmts = None, None, fmts
        self.xlabel, self.legend = xlabel, legend
        self.path: Path | None = None  # the PNG, outside Jupyter; chosen at the first add

    def add(self, x, y) -> None:
        """Append one point per curve: y a number or a sequence (None skips that curve)."""
        if not hasattr(y, "__len__"):
            y = [y]
        n = len(y)
        if not hasattr(x, "__len__"):
            x = [x] * n
        if not self.X:
            self.X = [[] for _ in range(n)]
        if not self.Y:
            self.Y = [[] for _ in range(n)]
        for i, (a, b) in enumerate(zip(x, y)):
            if a is not None and b is not None:
                self.X[i].append(a)
                self.Y[i].append(b)
        self.axes[0].cla()
        for xs, ys, fmt in zip(self.X, self.Y, self.fmts):
            self.axes[0].plot(xs, ys, fmt)
        self.config_axes()
        if _in_notebook():
            from IPython import display

            display.display(self.fig)
            display.clear_output(wait=True)
            return
        if self.path is None:
            self.path = _next_png(os.environ.get("SOFTMAXLAB_ANIMATOR_PNG") or "animator.png")
            print(f"d2l.Animator: drawing to {self.path} (rewritten after each point)")
        _write_png(self.fig, self.path)
        names = [self.legend[i] if i < len(self.legend) else f"y{i}" for i in range(n)]
        values = ", ".join(f"{name} {v:.4f}" for name, v in zip(names, y) if v is not None)
        print(f"{self.xlabel or 'x'} {x[0]:g}: {values}")


class Timer:
    """A stopwatch that records several runs: start(), stop() -> seconds, avg(), sum(), cumsum()."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.start()

    def start(self) -> None:
        self.tik = time.perf_counter()

    def stop(self) -> float:
        """Record and return the seconds since the last start()."""
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self) -> float:
        return sum(self.times) / len(self.times)

    def sum(self) -> float:
        return sum(self.times)

    def cumsum(self) -> list[float]:
        return np.array(self.times).cumsum().tolist()


# --------------------------------------------------------------------------- the model's math


def softmax(X: torch.Tensor) -> torch.Tensor:
    """The chapter's softmax, exp / row sum: X (N, C) -> (N, C). nan once a score reaches ~89."""
    return F.naive_softmax(X)


def cross_entropy(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The chapter's -log(y_hat[range(N), y]): probabilities (N, C), labels (N,) -> losses (N,)."""
    return F.cross_entropy_from_probs(y_hat, y)


def evaluate_accuracy(net, data_iter) -> float:
    """Fraction of the examples of ``data_iter`` that ``net`` classifies right (eval mode)."""
    return _train.evaluate_accuracy(net, data_iter)


# --------------------------------------------------------------------------- training


def train_epoch_ch3(net, train_iter: Iterable, loss: Callable, updater: _train.Updater):
    """One epoch of the chapter's loop; returns (mean training loss, training accuracy).

    net: an nn.Module or a function X -> (N, C) scores or probabilities; loss(y_hat, y) -> (N,)
    per-example losses; updater: a torch.optim.Optimizer (it steps on the mean loss) or
    ``updater(batch_size)`` (called after the summed loss's backward, as with ``d2l.sgd``).
    """
    return _train.train_epoch(net, train_iter, loss, updater)


def train_ch3(net, train_iter, test_iter, loss, num_epochs, updater) -> None:
    """Train ``num_epochs`` epochs, plotting train loss, train acc and test acc after each.

    Ends with the chapter's checks: train loss < 0.5 and both accuracies in (0.7, 1]. After 10
    epochs at lr 0.1 they hold; fewer than about 5 epochs fail the train-loss one.
    """
    if num_epochs < 1:
        raise ConfigError(f"num_epochs={num_epochs!r} is not allowed; it must be >= 1")
    animator = Animator(xlabel="epoch", xlim=[1, num_epochs], ylim=[0.3, 0.9],
                        legend=["train loss", "train acc", "test acc"])
    for epoch in range(num_epochs):
        train_metrics = train_epoch_ch3(net, train_iter, loss, updater)
        test_acc = evaluate_accuracy(net, test_iter)
        animator.add(epoch + 1, (*train_metrics, test_acc))
    train_loss, train_acc = train_metrics
    assert train_loss < 0.5, f"train_loss={train_loss}"
    assert train_acc <= 1 and train_acc > 0.7, f"train_acc={train_acc}"
    assert test_acc <= 1 and test_acc > 0.7, f"test_acc={test_acc}"


def predict_ch3(net, test_iter, n=6) -> None:
    """The first ``n`` images of the first test batch, titled "true\\npredicted" (wrong in red).

    Outside Jupyter the figure is also saved to predict_ch3.png (see the module docstring).
    """
    X, y = next(iter(test_iter))
    with torch.no_grad():
        preds = net(X).argmax(dim=1)
    trues, guesses = get_fashion_mnist_labels(y[:n]), get_fashion_mnist_labels(preds[:n])
    titles = [true + "\n" + pred for true, pred in zip(trues, guesses)]
    axes = _show_images(X[:n, 0], 1, n, titles=titles)
    for ax, true, pred in zip(axes, trues, guesses):
        if true != pred:
            ax.title.set_color("red")
    _publish(axes[0].figure, "predict_ch3.png", "predict_ch3")
