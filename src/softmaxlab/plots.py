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
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
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
        img = _as_image(img)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_axis_off()
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=9)
    for ax in axes[len(imgs):]:
        ax.set_visible(False)
    return axes


def plot_image_grid(imgs, titles: Sequence[str] | None = None, num_cols: int = 9,
                    scale: float = 1.5, colors: Sequence[str] | None = None,
                    fontsize: float = 9):
    """A grid of images (N, H, W) with titles, ``num_cols`` wide; returns the Figure.

    Drawn as one mosaic in a single Axes with a text per tile (``colors``: one per title): several
    times faster than a subplot per image. uint8 images are shown on 0..255, others on 0..1.
    """
    tiles = [_as_image(img) for img in imgs]
    tiles = [t / 255.0 if t.dtype == np.uint8 else np.asarray(t, dtype=np.float64) for t in tiles]
    n = len(tiles)
    H, W = tiles[0].shape[:2]
    cols = max(1, min(num_cols, n))
    rows = max(1, -(-n // cols))
    lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles else 0
    # room above each tile for its title: a line is ~1.4 * fontsize points, a tile is scale inches
    top = round(H * lines * 1.4 * fontsize / 72 / scale)
    gap = max(1, W // 8)
    cell_h, cell_w = top + H + gap, W + gap
    mosaic = np.full((rows * cell_h, cols * cell_w) + tiles[0].shape[2:], np.nan)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        mosaic[r * cell_h + top:r * cell_h + top + H, c * cell_w:c * cell_w + W] = tile
    fig = plt.figure(figsize=(cols * scale * cell_w / W, rows * scale * cell_h / W))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0, vmax=1,
              interpolation="nearest")
    for k, title in enumerate(titles or []):
        r, c = divmod(k, cols)
        ax.text(c * cell_w + W / 2, r * cell_h + top - 0.5, title, ha="center", va="bottom",
                fontsize=fontsize, color=colors[k] if colors else "black")
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
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
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
    colors = ["black" if t == p else "red" for t, p in zip(true_labels, pred_labels)]
    return plot_image_grid(images, titles, num_cols=num_cols, colors=colors)


def plot_weights(W, class_names: Sequence[str], image_shape: tuple[int, int],
                 num_cols: int = 5, scale: float = 1.6, title: str | None = None):
    """What a softmax regression learned: each class's weight vector as an image; the Figure.

    W (D, C) with D = H * W pixels: column c is reshaped to ``image_shape`` and drawn with a
    diverging colour map centred on 0 (red: a bright pixel there raises class c's score, blue:
    lowers it), one scale for all classes (+-the largest |weight|) and one colour bar.
    """
    W = np.asarray(W.detach().cpu() if isinstance(W, torch.Tensor) else W, dtype=np.float64)
    H, Wd = image_shape
    C = W.shape[1]
    cols = max(1, min(num_cols, C))
    rows = -(-C // cols)
    limit = float(np.abs(W).max()) or 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(cols * scale + 1.2, rows * (scale + 0.3)),
                             squeeze=False, layout="constrained")
    for c, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if c >= C:
            continue
        im = ax.imshow(W[:, c].reshape(H, Wd), cmap="RdBu_r", vmin=-limit, vmax=limit,
                       interpolation="nearest")
        ax.set_title(str(class_names[c]) if c < len(class_names) else str(c), fontsize=9)
    cbar = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9, aspect=25)
    cbar.set_label("weight", fontsize=8)
    fig.suptitle(title or "red: a bright pixel there raises the class's score; blue: lowers it",
                 fontsize=9)
    return fig


# ---------------------------------------------------------------------------- evaluation figures


def figure_png_bytes(fig, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (for embedding, e.g. in report.html); closes it."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    return buf.getvalue()


def plot_confusion_matrix(cm, class_names: Sequence[str], title: str | None = None):
    """Confusion matrix (C, C) of counts, rows true / columns predicted, shaded by row share."""
    cm = np.asarray(cm.detach().cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.int64)
    C = len(class_names)
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    size = max(4.0, 0.62 * C + 1.8)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("share of the true class")
    fontsize = 9 if C <= 12 else 7
    for i in range(C):
        for j in range(C):
            color = "white" if share[i, j] > 0.55 else "#222222" if cm[i, j] else "#b8c2cc"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fontsize,
                    color=color)
    ax.set_xticks(range(C), labels=list(class_names), rotation=40, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(C), labels=list(class_names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(np.arange(C + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(C + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    ax.set_title(title or f"confusion matrix ({int(cm.sum())} images)")
    fig.tight_layout()
    return fig


def plot_reliability_diagram(edges, count, accuracy, confidence, ece: float,
                             title: str | None = None):
    """Reliability diagram: accuracy per confidence bin against the diagonal, bin counts below.

    edges (B + 1,), count (B,), accuracy / confidence (B,) (nan in empty bins).
    """
    edges, count, accuracy, confidence = (np.asarray(t, dtype=np.float64)
                                          for t in (edges, count, accuracy, confidence))
    width = np.diff(edges)
    full = count > 0
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(5.5, 6.2), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.3]})
    ax.bar(edges[:-1][full], accuracy[full], width=width[full], align="edge", color="#4c78a8",
           edgecolor="white", linewidth=0.8, label="accuracy in the bin")
    lo = np.minimum(accuracy[full], confidence[full])
    ax.bar(edges[:-1][full], np.abs(confidence[full] - accuracy[full]), bottom=lo,
           width=width[full], align="edge", fill=False, edgecolor="#d62728", hatch="///",
           linewidth=0.8, label="gap to the bin's mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="#444444", linewidth=1.2, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    legend = ax.legend(loc="best", fontsize=8, framealpha=0.95,
                       title=f"ECE = {ece:.4f} ({len(count)} bins, {int(count.sum())} images)")
    legend.get_title().set_fontsize(9)
    ax.set_title(title or "reliability diagram (top probability)")
    axc.bar(edges[:-1], count, width=width, align="edge", color="#9d9d9d", edgecolor="white",
            linewidth=0.8)
    for left, w, n in zip(edges[:-1], width, count):
        if n:
            axc.text(left + w / 2, n, f"{int(n)}", ha="center", va="bottom", fontsize=6.5,
                     rotation=90 if len(count) > 10 else 0)
    axc.set_yscale("log")
    axc.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # decades only: fewer ticks
    axc.set_ylim(0.8, max(count.max(), 1) * 8)
    axc.set_ylabel("images (log)")
    axc.set_xlabel("confidence (largest probability)")
    axc.grid(True, axis="y", alpha=0.3)
    # fixed margins (the labels are fixed text): tight_layout would draw the figure once more
    fig.subplots_adjust(left=0.14, right=0.955, top=0.95, bottom=0.08, hspace=0.06)
    return fig


def plot_mistakes(images, true_labels: Sequence[str], pred_labels: Sequence[str],
                  probs: Sequence[float], num_cols: int = 8):
    """Wrong predictions (N, H, W) titled "true / predicted / probability"; the Figure."""
    titles = [f"true: {t}\npred: {p}\np = {q:.3f}"
              for t, p, q in zip(true_labels, pred_labels, probs)]
    return plot_image_grid(images, titles, num_cols=num_cols, scale=1.7,
                           colors=["#b00020"] * len(titles), fontsize=8.5)


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
