"""The book's pictures: inline in Jupyter, PNG files from a script, at a bounded rate.

In an IPython kernel (Jupyter, VS Code, Colab) every figure shows inline as in the book: SVG after
``use_svg_display()``; ``Animator`` and ``ProgressBoard`` redraw in place. Anywhere else (a
script, a terminal) each figure is written to a PNG in ``$SOFTMAXLAB_FIGURES`` (default: the
current folder) and its path is printed once: ``show_images.png``, ``plot.png``,
``predict_ch3.png``, ``weights.png``, ``animator.png`` (or ``$SOFTMAXLAB_ANIMATOR_PNG``),
``progress_board.png``; a second figure of a kind gets ``-2``, a third ``-3``, ... A figure that
keeps changing (a board drawn every batch) is rewritten at most once per ``REDRAW_SECONDS`` (more
rarely if writing it is slow); its final state is always written: when training ends
(``Trainer.fit``, ``train_ch3``) and, for anything left, when the program exits. No window is
opened and the figures stay open, so ``d2l.plt.show()`` at the end of a script still shows them
under a GUI backend.
"""

from __future__ import annotations

import atexit
import collections
import math
import os
import sys
import time
import weakref
from pathlib import Path

import torch
from torch import nn

from .. import plots
from ..fsutil import atomic_path
from ..plots import plt
from .base import HyperParameters

REDRAW_SECONDS = 1.0  # a changing figure is shown again at most this often (and after 10x its cost)

__all__ = ["Animator", "ProgressBoard", "plot", "plt", "set_axes", "set_figsize", "show_images",
           "show_weights", "use_svg_display"]


def in_notebook() -> bool:
    """True inside an IPython kernel (Jupyter, VS Code, Colab): figures display inline there."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


# --------------------------------------------------------------------------- PNG files


_pngs_written: dict[Path, int] = {}  # default PNG path -> figures given a path from it so far


def next_png(default: str | os.PathLike) -> Path:
    """``default`` in ``$SOFTMAXLAB_FIGURES`` (resolved) for its first figure, then stem-2.png..."""
    path = (Path(os.environ.get("SOFTMAXLAB_FIGURES") or ".") / default).resolve()
    n = _pngs_written[path] = _pngs_written.get(path, 0) + 1
    return path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")


def write_png(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` via a temp file + rename, leaving it open for more drawing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def publish(fig, default: str, what: str) -> None:
    """A finished figure: outside a notebook, write it to the next PNG named ``default``; say where.

    In a notebook nothing is needed: the inline backend shows the figure when the cell ends.
    """
    if not in_notebook():
        path = next_png(default)
        write_png(fig, path)
        print(f"d2l.{what}: figure saved to {path}")


class LiveFigure:
    """A figure that keeps changing, shown at a bounded rate: ``update()`` after each change.

    The first ``update`` shows it at once; later ones only when ``REDRAW_SECONDS`` (and ten times
    the cost of the last showing) have passed, else it is marked as pending. ``flush()`` shows a
    pending state. ``sync`` (optional) brings the figure's artists up to date just before it is
    shown, so changes cost nothing until then. Showing is inline in a notebook (when ``inline``)
    and a PNG rewrite elsewhere.
    """

    def __init__(self, fig, default_png: str, what: str, inline: bool = True, sync=None) -> None:
        self.fig, self.default_png, self.what, self.inline = fig, default_png, what, inline
        self.sync = sync
        self.path: Path | None = None  # the PNG, outside a notebook; chosen at the first showing
        self.pending = False
        self.shown_at, self.cost = -math.inf, 0.0
        _register(self)

    def update(self) -> None:
        """The figure changed: show it now if the last showing is old enough, else later."""
        self.pending = True
        notebook = in_notebook()
        if notebook and not self.inline:
            return  # the inline backend shows it when the cell ends
        if notebook and self.sync is not None:
            self.sync()  # the inline backend may show the figure at the end of the cell
        if time.monotonic() - self.shown_at >= max(REDRAW_SECONDS, 10 * self.cost):
            self._show(notebook)

    def flush(self) -> None:
        """Show the latest state if it has not been shown."""
        if self.pending and not (in_notebook() and not self.inline):
            self._show(in_notebook())

    def _show(self, notebook: bool) -> None:
        start = time.monotonic()
        if self.sync is not None:
            self.sync()
        if notebook:
            from IPython import display

            display.display(self.fig)
            display.clear_output(wait=True)
        else:
            if self.path is None:
                self.path = next_png(self.default_png)
                print(f"d2l.{self.what}: drawing to {self.path} (kept up to date while it draws)")
            write_png(self.fig, self.path)
        self.pending = False
        self.shown_at = time.monotonic()
        self.cost = self.shown_at - start


_live: weakref.WeakSet[LiveFigure] = weakref.WeakSet()


def _register(figure: LiveFigure) -> None:
    if not _live:
        atexit.unregister(flush_all)
        atexit.register(flush_all)
    _live.add(figure)


def flush_all() -> None:
    """Show the pending state of every live figure (run at exit too)."""
    for figure in list(_live):
        figure.flush()


# --------------------------------------------------------------------------- the book's helpers


def use_svg_display() -> None:
    """Inline figures as SVG in Jupyter, as the book does; outside Jupyter they are PNG files."""
    if in_notebook():
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


def _plain(values):
    """A tensor as a numpy array (detached, on the CPU); anything else unchanged."""
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values


_plot_figures: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # figure -> LiveFigure


def plot(X, Y=None, xlabel=None, ylabel=None, legend=None, xlim=None, ylim=None,
         xscale="linear", yscale="linear", fmts=("-", "m--", "g-.", "r:"), figsize=(3.5, 2.5),
         axes=None):
    """Plot curves: ``Y`` against ``X`` (one or several of each), or ``X`` against its index.

    Draws into ``axes`` (default: the current axes; from a script, a new figure once the current
    one holds an earlier ``plot``), clearing it first.
    """
    if legend is None:
        legend = []
    set_figsize(figsize)
    if axes is None:
        if plt.get_fignums() and plt.gcf() in _plot_figures and not in_notebook():
            plt.figure()  # one figure (one PNG) per call, as one per cell in a notebook
        axes = plt.gca()

    def has_one_axis(X):  # True if X (tensor or list) has 1 axis
        return (hasattr(X, "ndim") and X.ndim == 1 or isinstance(X, list)
                and not hasattr(X[0], "__len__"))

    if has_one_axis(X):
        X = [X]
    if Y is None:
        X, Y = [[]] * len(X), X
    elif has_one_axis(Y):
        Y = [Y]
    if len(X) != len(Y):
        X = X * len(Y)
    axes.cla()
    for x, y, fmt in zip(X, Y, fmts):
        if len(x):
            axes.plot(_plain(x), _plain(y), fmt)
        else:
            axes.plot(_plain(y), fmt)
    set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend)
    fig = axes.figure
    if fig not in _plot_figures:
        _plot_figures[fig] = LiveFigure(fig, "plot.png", "plot", inline=False)
    _plot_figures[fig].update()


def show_images(imgs, num_rows, num_cols, titles=None, scale=1.5):
    """Images (N, H, W) (tensors, arrays or PIL) in a grid with optional titles; returns the axes.

    Outside Jupyter the grid is also saved to show_images.png.
    """
    axes = plots.show_images(imgs, num_rows, num_cols, titles, scale)
    publish(axes[0].figure, "show_images.png", "show_images")
    return axes


def _weight_matrix(model) -> torch.Tensor:
    """The (D, C) weights of a softmax regression: a tensor (D, C) or (C, D), a model with a
    ``W`` (from scratch), or an ``nn.Module`` with a linear layer (its last one)."""
    if isinstance(model, torch.Tensor):
        W = model
    elif isinstance(getattr(model, "W", None), torch.Tensor):
        W = model.W
    elif isinstance(model, nn.Module):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise TypeError(f"{type(model).__name__} has no nn.Linear layer to show")
        W = linears[-1].weight.T
    else:
        raise TypeError(f"cannot find weights in a {type(model).__name__}: give a weight "
                        "tensor (D, C), a model with a W, or an nn.Module with an nn.Linear")
    return W.detach().cpu().float()


def show_weights(model, titles=None, image_shape=(28, 28), num_cols=5, scale=1.6):
    """What a softmax regression learned: each class's weight vector as an image; the Figure.

    ``model``: the weights (D, C) or (C, D) with D = H * W pixels, a model holding ``W``, or an
    ``nn.Module`` whose last ``nn.Linear`` maps the pixels to the classes. Red pixels raise a
    class's score when they are bright, blue ones lower it; one colour scale, centred on 0.
    ``titles`` default to the Fashion-MNIST names for 10 classes. Outside Jupyter the figure is
    also saved to weights.png.
    """
    W = _weight_matrix(model)
    D = image_shape[0] * image_shape[1]
    if W.ndim != 2 or D not in W.shape:
        raise ValueError(f"weights of shape {tuple(W.shape)} do not fit images of shape "
                         f"{tuple(image_shape)} ({D} pixels): pass image_shape=(H, W)")
    if W.shape[0] != D:
        W = W.T
    if titles is None:
        from .data import get_fashion_mnist_labels

        C = W.shape[1]
        titles = get_fashion_mnist_labels(range(C)) if C == 10 else [str(c) for c in range(C)]
    fig = plots.plot_weights(W, titles, image_shape, num_cols=num_cols, scale=scale)
    publish(fig, "weights.png", "show_weights")
    return fig


# --------------------------------------------------------------------------- live plots


class Animator:
    """Curves that grow by one point per ``add(x, y)``: the book's live training plot.

    In Jupyter it redraws in place; elsewhere it keeps a PNG up to date (animator.png or
    ``$SOFTMAXLAB_ANIMATOR_PNG``), says where once, and prints each point.
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
        self.live = LiveFigure(self.fig, os.environ.get("SOFTMAXLAB_ANIMATOR_PNG")
                               or "animator.png", "Animator")

    @property
    def path(self) -> Path | None:
        """The PNG kept up to date outside Jupyter (None until the first point)."""
        return self.live.path

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
        self.live.update()
        if not in_notebook():
            names = [self.legend[i] if i < len(self.legend) else f"y{i}" for i in range(n)]
            values = ", ".join(f"{name} {v:.4f}" for name, v in zip(names, y) if v is not None)
            print(f"{self.xlabel or 'x'} {x[0]:g}: {values}")

    def flush(self) -> None:
        """Show the last points now if they have not been shown."""
        self.live.flush()


Point = collections.namedtuple("Point", ["x", "y"])


class ProgressBoard(HyperParameters):
    """d2l-en's board that plots data points in animation: ``draw(x, y, label, every_n=1)``.

    Each ``every_n`` points of a label are averaged into one point of its line (a partial group
    waits for more). The lines live in ``data`` ({label: [Point(x, y), ...]}). With
    ``display=True`` the figure is shown inline in Jupyter and kept in progress_board.png
    elsewhere, at a bounded rate (see the module docstring); ``flush()`` shows the latest state.
    """

    def __init__(self, xlabel=None, ylabel=None, xlim=None, ylim=None, xscale="linear",
                 yscale="linear", ls=["-", "--", "-.", ":"], colors=["C0", "C1", "C2", "C3"],  # noqa: B006
                 fig=None, axes=None, figsize=(3.5, 2.5), display=True) -> None:
        self.save_hyperparameters()

    def draw(self, x, y, label, every_n=1) -> None:
        """Add the point (x, y) to the line ``label``; every ``every_n`` points, plot their mean."""
        if not hasattr(self, "raw_points"):
            self.raw_points = collections.OrderedDict()
            self.data = collections.OrderedDict()
        if label not in self.raw_points:
            self.raw_points[label] = []
            self.data[label] = []
        points = self.raw_points[label]
        points.append(Point(x, y))
        if len(points) != every_n:
            return
        self.data[label].append(Point(sum(p.x for p in points) / len(points),
                                      sum(p.y for p in points) / len(points)))
        points.clear()
        if not self.display:
            return
        if getattr(self, "_live", None) is None:
            use_svg_display()
            if self.fig is None:
                self.fig = self.axes.figure if self.axes else plt.figure(figsize=self.figsize)
            self._lines = {}
            self._live = LiveFigure(self.fig, "progress_board.png", "ProgressBoard",
                                    sync=self._sync)
        self._live.update()

    def flush(self) -> None:
        """Show the latest points now if they have not been shown."""
        if getattr(self, "_live", None) is not None:
            self._live.flush()

    def _sync(self) -> None:
        """Bring the figure's lines, limits, labels and legend up to ``data``."""
        axes = self.axes if self.axes else self.fig.gca()
        lines, labels = [], []
        for (label, points), ls, color in zip(self.data.items(), self.ls, self.colors):
            line = self._lines.get(label)
            if line is None or line.axes is not axes:
                line = self._lines[label] = axes.plot([], [], linestyle=ls, color=color)[0]
            line.set_data([float(p.x) for p in points], [float(p.y) for p in points])
            lines.append(line)
            labels.append(label)
        axes.relim()
        axes.autoscale_view()
        if self.xlim:
            axes.set_xlim(self.xlim)
        if self.ylim:
            axes.set_ylim(self.ylim)
        axes.set_xlabel(self.xlabel or "")
        axes.set_ylabel(self.ylabel or "")
        axes.set_xscale(self.xscale)
        axes.set_yscale(self.yscale)
        axes.legend(lines, labels)
