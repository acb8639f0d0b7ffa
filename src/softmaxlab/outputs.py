"""The pictures written into a run folder at the end of training: curves.png, predictions.png."""

from __future__ import annotations

from pathlib import Path

import torch

from .data import text_labels

N_PREDICTIONS = 18  # test images shown in predictions.png (and in the report)


def predict_first(session, n: int = N_PREDICTIONS) -> tuple[torch.Tensor, list[str], list[str]]:
    """The first ``n`` test images (uint8 (n, H, W)), their true and predicted labels."""
    test = session.test
    pred = session.inference_model().predict(test.to_float(slice(0, n)))
    return (test.images[:n], text_labels(test.labels[:n], test.class_names),
            text_labels(pred, test.class_names))


def write_run_outputs(out: Path, session, history: list[dict]) -> list[Path]:
    """curves.png and predictions.png in ``out``; returns the paths written."""
    from . import plots

    title = f"{session.config.impl}, {session.config.loss}, lr {session.config.learning_rate:g}"
    written = [plots.save_figure(plots.plot_curves(history, title), out / "curves.png")]
    images, true, pred = predict_first(session)
    written.append(plots.save_figure(plots.plot_predictions(images, true, pred),
                                     out / "predictions.png"))
    return written
