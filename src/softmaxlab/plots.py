"""Every matplotlib figure of the project, drawn headless (Agg) unless a GUI backend is active.

Each ``plot_*`` function returns the ``Figure``; ``save_figure`` writes it atomically and closes it.
Nothing else in the package imports matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

if "MPLBACKEND" not in os.environ and not os.environ.get("DISPLAY") and "ipykernel" not in str(
    matplotlib.get_backend()
):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

from .fsutil import atomic_path


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) via a temp file + rename; close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def _as_image(img) -> np.ndarray:
    """A tensor/array image (H, W) or (1, H, W) -> (H, W) numpy for imshow."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
    return img


def show_images(imgs, num_rows: int, num_cols: int, titles: Sequence[str] | None = None,
                scale: float = 1.5):
    """The chapter's image grid: (num_rows x num_cols) images with optional titles; returns axes."""
    figsize = (num_cols * scale, num_rows * scale)
    _, axes = plt.subplots(num_rows, num_cols, figsize=figsize, squeeze=False)
    axes = axes.flatten()
    for i, (ax, img) in enumerate(zip(axes, imgs)):
        ax.imshow(_as_image(img), cmap="gray" if _as_image(img).ndim == 2 else None)
        ax.axes.get_xaxis().set_visible(False)
        ax.axes.get_yaxis().set_visible(False)
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=9)
    for ax in axes[len(imgs):]:
        ax.set_visible(False)
    return axes


def plot_image_grid(imgs, titles: Sequence[str] | None = None, num_cols: int = 9,
                    scale: float = 1.5):
    """A grid of images (N, H, W) with titles, ``num_cols`` wide; returns the Figure."""
    n = len(imgs)
    num_cols = max(1, min(num_cols, n))
    num_rows = max(1, -(-n // num_cols))
    axes = show_images(imgs, num_rows, num_cols, titles, scale)
    fig = axes[0].figure
    fig.tight_layout()
    return fig


def plot_curves(history: Sequence[dict], title: str | None = None):
    """Train loss, train acc and test acc (and val acc if present) against epoch; the Figure."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [row["epoch"] for row in history]
    styles = {"train_loss": ("train loss", "-"), "train_acc": ("train acc", "m--"),
              "test_acc": ("test acc", "g-."), "val_acc": ("val acc", "r:")}
    for key, (label, fmt) in styles.items():
        if history and key in history[0]:
            ax.plot(epochs, [row[key] for row in history], fmt, label=label, marker="o",
                    markersize=3)
    ax.set_xlabel("epoch")
    ax.set_xlim(min(epochs, default=1) - 0.2, max(epochs, default=1) + 0.2)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_predictions(images, true_labels: Sequence[str], pred_labels: Sequence[str],
                     num_cols: int = 9):
    """Images titled "true\\npredicted" (like predict_ch3), wrong ones in red; the Figure."""
    titles = [f"{t}\n{p}" for t, p in zip(true_labels, pred_labels)]
    fig = plot_image_grid(images, titles, num_cols=num_cols)
    for ax, t, p in zip(fig.axes, true_labels, pred_labels):
        if t != p:
            ax.title.set_color("red")
    return fig


# colours of the lecture's loss pictures
LOSS_COLOR, GRAD_COLOR, LIKELIHOOD_COLOR = "tab:blue", "tab:orange", "tab:green"
JUMP = 0.25  # a gradient step larger than this between neighbouring points is drawn as a gap


def _break_jumps(x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, g) with nan between points whose g jumps, and the mask of points left isolated."""
    jump = np.abs(np.diff(g)) > JUMP
    isolated = np.zeros(len(g), dtype=bool)
    isolated[1:-1] = jump[:-1] & jump[1:]
    cut = np.flatnonzero(jump) + 1
    return np.insert(x, cut, np.nan), np.insert(g, cut, np.nan), isolated


def plot_loss_curves(curves: Sequence):
    """One panel per ``compare.LossCurve``: loss (blue), gradient (orange), exp(-l) (green).

    Each curve's x, loss, grad, likelihood are (n,); the panels share their axes. A jump of the
    gradient is drawn as a gap, with the value taken at the kink as a dot. The Figure.
    """
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 4.6), sharey=True,
                             squeeze=False)
    for ax, c in zip(axes[0], curves):
        x, g = np.asarray(c.x), np.asarray(c.grad)
        ax.axhline(0, color="0.6", lw=0.8)
        kinks = [k for k in c.kinks if x[0] < k < x[-1]]
        for i, k in enumerate(kinks):
            ax.axvline(k, color="0.5", lw=0.9, ls=":", label="kink" if i == 0 else None)
        ax.plot(x, np.asarray(c.loss), color=LOSS_COLOR, lw=2.2, label="loss $l$")
        gx, gy, isolated = _break_jumps(x, g)
        ax.plot(gx, gy, color=GRAD_COLOR, lw=2.2, label=r"gradient $dl/dy'$")
        ax.plot(x[isolated], g[isolated], "o", color=GRAD_COLOR, markersize=5)
        for xi, gi in zip(x[isolated], g[isolated]):
            ax.annotate(f"subgradient {gi:g}", (xi, gi), xytext=(8, -14),
                        textcoords="offset points", fontsize=8.5, color=GRAD_COLOR)
        ax.plot(x, np.asarray(c.likelihood), color=LIKELIHOOD_COLOR, lw=2.2,
                label=f"likelihood $e^{{-l}}$ ({c.distribution})")
        ax.set_title(f"{c.name}\n{c.formula}", fontsize=11)
        ax.set_xlabel(f"prediction $y'$ (target $y = {c.target:g}$)")
        ax.set_xlim(x[0], x[-1])
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper center", fontsize=8.5, framealpha=0.9)
    axes[0][0].set_ylabel("value")
    axes[0][0].set_ylim(top=axes[0][0].get_ylim()[1] + 1.8)  # room for the legends
    fig.tight_layout()
    return fig


def plot_loss_comparison(histories: dict[str, Sequence[dict]], lrs: dict[str, float]):
    """Training with several losses: train loss (left) and accuracies (right) against epoch.

    ``histories`` maps a loss name to its history rows (epoch, train_loss, train_acc, test_acc),
    ``lrs`` to its learning rate. The train losses are on different scales, so each gets its own
    y axis in its own colour. The Figure.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    handles = []
    for i, (name, rows) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = [r["epoch"] for r in rows]
        label = f"{name} (lr {lrs[name]:g})"
        ax = ax_loss
        if i:
            ax = ax_loss.twinx()
            ax.spines["right"].set_position(("outward", 55 * (i - 1)))
        handles += ax.plot(epochs, [r["train_loss"] for r in rows], "-o", color=color,
                           markersize=3.5, label=label)
        ax.set_ylabel(f"{name} train loss", color=color)
        ax.tick_params(axis="y", colors=color)
        ax_acc.plot(epochs, [r["test_acc"] for r in rows], "-o", color=color, markersize=3.5,
                    label=f"{label} test")
        ax_acc.plot(epochs, [r["train_acc"] for r in rows], "--", color=color, alpha=0.7,
                    label=f"{label} train")
    ax_loss.set_title("train loss (each loss on its own axis: scales differ)", fontsize=10.5)
    ax_loss.set_xlabel("epoch")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend(handles=handles, loc="upper right")
    ax_acc.set_title("accuracy (test solid, train dashed)", fontsize=10.5)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return fig
