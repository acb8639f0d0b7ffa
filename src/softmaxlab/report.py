"""One self-contained HTML page about a run: ``report.html`` in the run folder.

The page holds the configuration, the training curves and history, the final metrics (from the
history and from ``softmaxlab.evaluation``), the confusion matrix, the per-class accuracy, the
calibration, sample predictions, what the model learned (its weights as images) and the most
confident mistakes. Every picture is a PNG embedded
as a ``data:`` URI and the CSS is inline; a Content-Security-Policy forbids anything else, so the
page loads nothing and runs nothing. Every text inserted is escaped with ``html.escape``.
"""

from __future__ import annotations

import base64
import os
import struct
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from . import __version__
from .checkpoint import load_trained, read_history, read_run_config
from .config import TrainConfig
from .data import ImageDataset, text_labels
from .evaluation import Evaluation, evaluate, evaluation_figures
from .fsutil import write_text
from .models import SoftmaxModel
from .outputs import N_PREDICTIONS

REPORT_FILE = "report.html"
DPI = 144  # figures are rendered at this dpi and shown at 100 dpi size: sharp on dense screens
RUN_PICTURE_DPI = 100  # the dpi of the run folder's curves.png / predictions.png (save_figure's)
CSP = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "img-src data:; style-src 'unsafe-inline'\">")

STYLE = """
body { margin: 0; background: #f4f5f7; color: #1d232b;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 40px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
.sub { color: #5b6573; margin: 0 0 18px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 8px;
  padding: 16px 20px; margin: 0 0 18px; }
h2 { margin: 0 0 12px; font-size: 19px; }
h3 { margin: 14px 0 8px; font-size: 15px; color: #3b4450; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
  background: none; border: none; padding: 0; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 10px 14px; }
.card .label { color: #5b6573; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .hint { color: #5b6573; font-size: 12px; }
.note { background: #fff7e0; border: 1px solid #f0c36d; border-radius: 8px; padding: 10px 14px;
  margin: 0 0 18px; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.row > * { flex: 1 1 380px; min-width: 0; }
img { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e8ebef; text-align: left; }
th { color: #3b4450; font-weight: 600; background: #f7f8fa; }
td.num, th.num { text-align: right; }
.kv td:first-child { color: #5b6573; }
.bar { background: #e8ebef; border-radius: 3px; height: 10px; width: 110px; }
.bar > span { display: block; height: 10px; border-radius: 3px; background: #4c78a8; }
details summary { cursor: pointer; color: #2f5d8a; margin: 8px 0; }
p.caption { color: #5b6573; font-size: 13px; margin: 6px 0 0; }
code { background: #f0f2f5; padding: 1px 4px; border-radius: 3px; }
footer { color: #8a93a0; font-size: 12px; text-align: center; }
.scroll { overflow-x: auto; }
table.confusion td.cm { text-align: right; min-width: 3.2em; border: 1px solid #fff; }
table.confusion th.cmh { vertical-align: bottom; font-size: 13px; }
table.confusion th.cmh span { writing-mode: vertical-rl; transform: rotate(180deg); }
"""


def _img(png: bytes, alt: str, dpi: int = DPI) -> str:
    """An <img> of PNG bytes drawn at ``dpi`` as a data: URI, sized as it would be at 100 dpi."""
    width, height = struct.unpack(">II", png[16:24])  # the PNG's IHDR chunk
    scale = 100 / dpi
    data = base64.b64encode(png).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" '
            f'width="{round(width * scale)}" height="{round(height * scale)}">')


def _figure(fig, alt: str) -> str:
    from .plots import figure_png_bytes

    return _img(figure_png_bytes(fig, dpi=DPI), alt)


def _fmt(value, short: bool = False) -> str:
    """A value for a table cell, escaped: floats to 4 decimals, or their shortest form."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if short or value == int(value):
            text = f"{value:g}"
        elif 1e-3 <= abs(value) < 1e4:
            text = f"{value:.4f}"
        else:
            text = f"{value:.4g}"
        return escape(text)
    return escape(str(value))


def _kv_table(items: dict) -> str:
    """A two-column table of settings; values as given (floats in their shortest form)."""
    rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{_fmt(v, short=True)}</td></tr>"
                   for k, v in items.items())
    return f'<table class="kv">{rows}</table>'


def _card(label: str, value: str, hint: str = "") -> str:
    hint_html = f'<div class="hint">{escape(hint)}</div>' if hint else ""
    return (f'<div class="card"><div class="label">{escape(label)}</div>'
            f'<div class="value">{escape(value)}</div>{hint_html}</div>')


def _cards(history: list[dict], ev: Evaluation) -> str:
    cards = [_card("test accuracy", f"{ev.accuracy:.4f}", f"{ev.n} {ev.dataset} test images"),
             _card("calibration error", f"{ev.ece:.4f}", f"ECE, {len(ev.bins.count)} bins")]
    if history:
        last = history[-1]
        cards.append(_card("train loss", f"{last['train_loss']:.4f}",
                           f"epoch {last['epoch']}, mean over the epoch"))
        cards.append(_card("train accuracy", f"{last['train_acc']:.4f}", "during the last epoch"))
        if "val_acc" in last:
            cards.append(_card("validation accuracy", f"{last['val_acc']:.4f}", "held out"))
        seconds = sum(r.get("seconds", 0.0) for r in history)
        cards.append(_card("epochs", str(len(history)), f"{seconds:.1f} s of training"))
    return f'<section class="cards">{"".join(cards)}</section>'


def _history_table(history: list[dict]) -> str:
    keys = [k for k in ("epoch", "train_loss", "train_acc", "val_acc", "test_acc", "lr", "seconds")
            if any(k in r for r in history)]
    head = "".join(f'<th class="num">{escape(k)}</th>' for k in keys)
    body = "".join("<tr>" + "".join(f'<td class="num">{_fmt(r.get(k))}</td>' for k in keys)
                   + "</tr>" for r in history)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _per_class_table(ev: Evaluation) -> str:
    rows = []
    for r in ev.per_class_rows():
        acc = r["accuracy"]
        bar = ("" if acc is None else
               f'<div class="bar"><span style="width: {100 * acc:.1f}%"></span></div>')
        other = ("–" if r["confused_with"] is None else
                 f"{escape(r['confused_with'])} ({r['confused_share']:.1%})")
        rows.append(f"<tr><td>{escape(r['class'])}</td><td class=\"num\">{_fmt(acc)}</td>"
                    f"<td>{bar}</td><td class=\"num\">{r['correct']}/{r['n']}</td>"
                    f"<td>{other}</td></tr>")
    return ('<table><thead><tr><th>class</th><th class="num">accuracy</th><th></th>'
            '<th class="num">correct</th><th>most often mistaken for</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _caption(text: str) -> str:
    return f'<p class="caption">{escape(text)}</p>'


def _section(heading: str, *body: str) -> str:
    return f"<section><h2>{escape(heading)}</h2>{''.join(body)}</section>"


def _header(run_cfg: dict, config: dict, ev: Evaluation, title: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sub = (f"{config.get('impl', '?')} softmax regression, loss {config.get('loss', '?')}, on "
           f"{ev.dataset} · trained with softmaxlab {run_cfg.get('version', '?')} · report by "
           f"softmaxlab {__version__} on {stamp}")
    return f'<header><h1>{escape(title)}</h1><p class="sub">{escape(sub)}</p></header>'


def _config_section(config: dict, dataset: dict, class_names) -> str:
    facts = {k: v for k, v in dataset.items() if k != "class_names"}
    names = ", ".join(dataset.get("class_names", class_names))
    return _section(
        "Configuration",
        '<div class="row">',
        f"<div><h3>training options</h3>{_kv_table(config)}</div>",
        f"<div><h3>dataset</h3>{_kv_table(facts)}<h3>classes</h3><p>{escape(names)}</p></div>",
        "</div>",
    )


def _training_section(history: list[dict], png: bytes | None = None) -> str:
    from .plots import plot_curves

    if not history:
        return _section("Training", "<p>No epoch has been trained yet (the model is its initial "
                                    "draw).</p>")
    return _section(
        "Training",
        (_img(png, "training curves", dpi=RUN_PICTURE_DPI) if png
         else _figure(plot_curves(history), "training curves")),
        _caption("train loss and accuracy (means over each epoch) and test accuracy after each "
                 "epoch."),
        f"<details><summary>per-epoch history</summary>{_history_table(history)}</details>",
    )


def _confusion_table(ev: Evaluation) -> str:
    """The confusion matrix as a table: counts, each cell shaded by its share of the true class
    (the same picture as confusion_matrix.png, as text: sharp at any size, and selectable)."""
    cm = ev.confusion.tolist()
    names = [escape(n) for n in ev.class_names]
    head = "".join(f'<th class="cmh"><span>{n}</span></th>' for n in names)
    rows = []
    for name, row in zip(names, cm):
        total = sum(row)
        cells = []
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            ink = "#fff" if share > 0.55 else "#222" if count else "#b8c2cc"
            cells.append(f'<td class="cm" style="background: rgba(8, 81, 156, {share:.3f}); '
                         f'color: {ink}" title="true {name}, predicted {names[j]}: {count} '
                         f'({share:.1%} of {name})">{count}</td>')
        rows.append(f'<tr><th>{name}</th>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="confusion"><thead><tr><th>true \\ predicted</th>'
            f'{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _test_section(ev: Evaluation) -> str:
    return _section(
        f"Test set: {ev.n} images",
        _confusion_table(ev),
        _caption("the confusion matrix, rows: the true class, columns: the predicted one; the "
                 "shade is the share of the true class."),
        f"<h3>per-class accuracy</h3>{_per_class_table(ev)}",
    )


def _calibration_section(ev: Evaluation, figures: dict) -> str:
    text = (f"A prediction's confidence is its largest probability. Split into "
            f"{len(ev.bins.count)} equal-width confidence bins, a calibrated model is right as "
            "often as it is confident in each bin (the bars meet the diagonal). The expected "
            "calibration error is the average gap, weighted by the bins' share of images: "
            f"{ev.ece:.4f}. Mean confidence {ev.mean_confidence:.4f} against accuracy "
            f"{ev.accuracy:.4f}.")
    return _section(
        "Calibration",
        '<div class="row">',
        f"<div>{_figure(figures['reliability'], 'reliability diagram')}</div>",
        f"<div><p>{escape(text)}</p></div>",
        "</div>",
    )


def _samples_section(ev: Evaluation, png: bytes | None = None) -> str:
    from .plots import plot_predictions

    names, k = ev.class_names, min(N_PREDICTIONS, ev.n)
    if png is None:
        fig = plot_predictions(ev.images[:k], text_labels(ev.labels[:k], names),
                               text_labels(ev.pred[:k], names))
    return _section(
        "Sample predictions",
        (_img(png, "sample predictions", dpi=RUN_PICTURE_DPI) if png
         else _figure(fig, "sample predictions")),
        _caption(f"the first {k} test images, titled true / predicted class; wrong ones in red."),
    )


def pixel_weights(model: SoftmaxModel):
    """The model's weights per raw pixel, (D, C): what a bright pixel adds to each class's score.

    That is W, or W / std (per pixel) for a model that standardises its inputs: the score of an
    image x (pixels in [0, 1]) is then x @ (W / std) plus a constant per class.
    """
    W = model.W.detach().cpu().float()
    if model.standardizer is not None:
        W = W / model.standardizer.std.detach().cpu().float().reshape(-1, 1)
    return W


def _weights_section(model: SoftmaxModel) -> str:
    from .plots import plot_weights

    names = model.class_names or tuple(str(c) for c in range(model.W.shape[1]))
    fig = plot_weights(pixel_weights(model), names, model.image_shape)
    scale = " per raw pixel (the weights divided by the pixel's std)" if model.standardizer \
        else ""
    return _section(
        "What the model learned",
        _figure(fig, "the weights of each class as images"),
        _caption(f"each class's weight vector{scale} drawn as an image: a bright pixel where it "
                 "is red raises that class's score, where it is blue lowers it; one colour "
                 "scale for all classes, centred on 0."),
    )


def _mistakes_section(figures: dict) -> str:
    if figures["mistakes"] is None:
        return _section("Most confident mistakes", "<p>No test image is misclassified.</p>")
    return _section(
        "Most confident mistakes",
        _figure(figures["mistakes"], "most confident mistakes"),
        _caption("the wrong predictions with the largest probability, titled true class / "
                 "predicted class / its probability."),
    )


def render_report(run_cfg: dict, history: list[dict], ev: Evaluation, title: str,
                  pictures: dict[str, bytes] | None = None,
                  model: SoftmaxModel | None = None) -> str:
    """The report's HTML text for a run: its config.json ``run_cfg``, history and evaluation.

    ``pictures``: PNG bytes already drawn for the run (``curves``, ``predictions``: the run
    folder's curves.png / predictions.png) to embed instead of drawing them again. ``model``:
    the trained model, for the picture of its weights (left out without it, or when its inputs
    are not images).
    """
    pictures = pictures or {}
    config, dataset = dict(run_cfg.get("config", {})), run_cfg.get("dataset", {})
    if config.get("lr") is None:
        config["lr"] = f"{TrainConfig.from_dict(config).learning_rate:g} (the loss's default)"
    figures = evaluation_figures(ev, include=("reliability", "mistakes"))
    note = (f'<div class="note"><strong>Note:</strong> {escape(ev.note)}.</div>' if ev.note
            else "")
    footer = (f"softmaxlab {__version__}: a self-contained page; pictures are embedded, nothing "
              "is loaded from elsewhere.")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        CSP,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>",
        _header(run_cfg, config, ev, title),
        _cards(history, ev),
        note,
        _config_section(config, dataset, ev.class_names),
        _training_section(history, pictures.get("curves")),
        _test_section(ev),
        _calibration_section(ev, figures),
        _samples_section(ev, pictures.get("predictions")),
        _weights_section(model) if model is not None and model.image_shape else "",
        _mistakes_section(figures),
        f"<footer>{escape(footer)}</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(run_dir: str | os.PathLike, test: ImageDataset) -> Path:
    """Evaluate the run in ``run_dir`` on ``test`` and write ``run_dir/report.html``; its path."""
    run_dir = Path(run_dir)
    run_cfg = read_run_config(run_dir)
    history = read_history(run_dir)
    model = load_trained(run_dir)
    ev = evaluate(model, test)
    title = f"softmaxlab run {run_dir.resolve().name}"
    # the run's own pictures, drawn by `train` from the same history and test images
    pictures = {name: (run_dir / f"{name}.png").read_bytes() for name in ("curves", "predictions")
                if (run_dir / f"{name}.png").is_file()}
    return write_text(run_dir / REPORT_FILE,
                      render_report(run_cfg, history, ev, title, pictures, model))
