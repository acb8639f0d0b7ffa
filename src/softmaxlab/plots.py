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
