"""The pictures (and report) written into a run folder at the end of training."""

from __future__ import annotations

from pathlib import Path

import torch

N_PREDICTIONS = 18  # test images shown in predictions.png


def predict_first(session, n: int = N_PREDICTIONS) -> tuple[torch.Tensor, list[str], list[str]]:
    """The first ``n`` test images (uint8 (n, H, W)), their true and predicted labels."""
    test = session.test
    images, labels = test.images[:n], test.labels[:n]
    with torch.no_grad():
        pred = session.model(session.transform(test.to_float(slice(0, n)))).argmax(1)
    names = test.class_names
    return images, [names[int(i)] for i in labels], [names[int(i)] for i in pred]


def write_run_outputs(out: Path, session, history: list[dict], report: bool = True) -> list[Path]:
    """curves.png and predictions.png (and report.html) in ``out``; returns the paths written."""
    from . import plots

    title = f"{session.config.impl}, {session.config.loss}, lr {session.config.learning_rate:g}"
    written = [plots.save_figure(plots.plot_curves(history, title), out / "curves.png")]
    images, true, pred = predict_first(session)
    written.append(plots.save_figure(plots.plot_predictions(images, true, pred),
                                     out / "predictions.png"))
    if report:
        from .report import write_report

        written.append(write_report(out, session.test))
    return written
