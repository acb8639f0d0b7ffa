"""Tests for softmaxlab.evaluation and `softmaxlab evaluate`, on run folders trained on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import metrics as skm

import softmaxlab.data
from conftest import make_dataset
from softmaxlab import checkpoint
from softmaxlab.cli import main
from softmaxlab.data import ImageDataset
from softmaxlab.evaluation import MSE_NOTE, N_MISTAKES, evaluate, write_evaluation
from softmaxlab.runner import Session, TrainConfig

CLASSES = ("top", "trousers", "shoe", "bag")


def tiny_data(class_names=CLASSES) -> tuple[ImageDataset, ImageDataset]:
    """Train (240) and test (120) 8x8 images of ``class_names``' classes, from make_dataset."""
    c = len(class_names)
    return make_dataset(240, 0, c, (8, 8), class_names), make_dataset(120, 1, c, (8, 8), class_names)


def make_run(out: Path, loss: str = "ce", epochs: int = 2, class_names=CLASSES,
             data_dir: str | None = None) -> Path:
    """Train on tiny data with runner.Session and write a run folder into ``out``."""
    train, test = tiny_data(class_names)
    lr = 0.5 if loss == "ce" else 0.002
    session = Session(TrainConfig(epochs=epochs, batch_size=32, lr=lr, loss=loss), train, test)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.write_config(out, session, data_dir)
    history = session.fit()
    checkpoint.save_checkpoint(out, session, history)
    return out


@pytest.fixture
def tiny_run(tmp_path) -> Path:
    """A run folder trained for 2 epochs on tiny_data (its config says data_dir /somewhere/tiny)."""
    return make_run(tmp_path / "run", data_dir="/somewhere/tiny")


@pytest.fixture
def fake_data(monkeypatch):
    """Serve the tiny data to every command; records the data_dir each load asked for."""
    calls: list[dict] = []

    def load_dataset(name="fashion-mnist", data_dir=None, **kwargs):
        calls.append({"name": name, "data_dir": data_dir})
        return tiny_data()

    monkeypatch.setattr(softmaxlab.data, "load_dataset", load_dataset)
    return calls


def strict_json(path: Path):
    """Parse JSON, failing on NaN/Infinity (which are not JSON)."""
    def bad(constant):
        raise AssertionError(f"{path} holds {constant}")
    return json.loads(path.read_text(), parse_constant=bad)


# --------------------------------------------------------------------------- library


def test_evaluate_agrees_with_training_and_sklearn(tiny_run):
    model = checkpoint.load_trained(tiny_run)
    _, test = tiny_data()
    ev = evaluate(model, test)
    history = json.loads((tiny_run / "history.json").read_text())
    assert ev.n == 120
    assert ev.accuracy == pytest.approx(history[-1]["test_acc"])
    assert ev.accuracy > 0.6  # the tiny task is learnable
    torch.testing.assert_close(ev.probs.sum(1), torch.ones(120))
    y, pred = test.labels.numpy(), ev.pred.numpy()
    np.testing.assert_array_equal(ev.confusion.numpy(), skm.confusion_matrix(y, pred))
    np.testing.assert_allclose(ev.per_class.numpy(),
                               skm.recall_score(y, pred, average=None))
    assert ev.note is None


def test_most_confident_mistakes_are_wrong_and_sorted(tiny_run):
    ev = evaluate(checkpoint.load_trained(tiny_run), tiny_data()[1])
    idx = ev.most_confident_mistakes()
    n_wrong = int((ev.pred != ev.labels).sum())
    assert len(idx) == min(N_MISTAKES, n_wrong) > 0
    assert bool((ev.pred[idx] != ev.labels[idx]).all())
    conf = ev.probs[idx].max(1).values
    assert bool((conf[:-1] >= conf[1:]).all())
    wrong_conf = ev.probs[ev.pred != ev.labels].max(1).values
    assert float(conf[0]) == float(wrong_conf.max())


def test_write_evaluation_files(tiny_run):
    ev = evaluate(checkpoint.load_trained(tiny_run), tiny_data()[1])
    written = write_evaluation(tiny_run, ev)
    names = sorted(p.name for p in written)
    assert names == ["confusion_matrix.png", "metrics.json", "mistakes.png", "reliability.png"]
    for p in written:
        assert p.parent == tiny_run / "eval" and p.stat().st_size > 0
        if p.suffix == ".png":
            with Image.open(p) as im:
                assert im.width > 100 and im.height > 100
    m = strict_json(tiny_run / "eval" / "metrics.json")
    assert m["n"] == 120 and m["accuracy"] == pytest.approx(ev.accuracy)
    assert m["expected_calibration_error"] == pytest.approx(ev.ece)
    assert m["ece_bins"] == 15
    assert list(m["per_class_accuracy"]) == list(CLASSES)
    assert m["confusion_matrix"] == ev.confusion.tolist()
    assert sum(map(sum, m["confusion_matrix"])) == 120
    assert len(m["reliability"]["count"]) == 15 and sum(m["reliability"]["count"]) == 120
    assert m["note"] is None and m["training_loss"] == "ce"


def test_mse_model_gets_a_note(tmp_path):
    run = make_run(tmp_path / "mse", loss="mse")
    ev = evaluate(checkpoint.load_trained(run), tiny_data()[1])
    assert ev.note == MSE_NOTE
    write_evaluation(run, ev)
    m = strict_json(run / "eval" / "metrics.json")
    assert m["training_loss"] == "mse" and "not calibrated" in m["note"]


def test_evaluate_rejects_other_data(tiny_run):
    model = checkpoint.load_trained(tiny_run)
    with pytest.raises(ValueError, match="does not match the model"):
        evaluate(model, make_dataset(40, 2, len(CLASSES), (12, 12), CLASSES))


# --------------------------------------------------------------------------- command line


def test_cli_evaluate_prints_and_writes(tiny_run, fake_data, capsys):
    assert main(["evaluate", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "ECE (15 bins)" in out
    for name in CLASSES:
        assert name in out
    assert "note:" not in out
    assert fake_data == [{"name": "fashion-mnist", "data_dir": "/somewhere/tiny"}]
    for name in ("metrics.json", "confusion_matrix.png", "reliability.png", "mistakes.png"):
        assert (tiny_run / "eval" / name).is_file()
    m = strict_json(tiny_run / "eval" / "metrics.json")
    assert f"test accuracy {m['accuracy']:.4f}" in out


def test_cli_evaluate_data_dir_overrides_the_runs(tiny_run, fake_data, capsys):
    assert main(["evaluate", str(tiny_run), "--data-dir", "/elsewhere"]) == 0
    assert fake_data[-1]["data_dir"] == "/elsewhere"


def test_cli_evaluate_says_the_mse_probabilities_are_not_calibrated(tmp_path, fake_data, capsys):
    run = make_run(tmp_path / "mse", loss="mse")
    assert main(["evaluate", str(run)]) == 0
    assert "note: " in capsys.readouterr().out and "not calibrated" in MSE_NOTE


@pytest.mark.parametrize("what", ["missing", "file", "not-a-run", "damaged"])
def test_cli_evaluate_bad_run_folder(tmp_path, tiny_run, fake_data, capsys, what):
    target = tmp_path / what
    if what == "file":
        target.write_text("x")
    elif what == "not-a-run":
        target.mkdir()
    elif what == "damaged":
        target = tiny_run
        (tiny_run / "model.safetensors").write_bytes(b"garbage")
    assert main(["evaluate", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softmaxlab evaluate: error: ") and str(target) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_train_then_evaluate_uses_the_runs_data_dir(tmp_path, tiny_idx_dir, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run), "--no-report",
                 "--data-dir", str(tiny_idx_dir), "--offline"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--offline"]) == 0  # no --data-dir: the run's own
    assert "test accuracy" in capsys.readouterr().out
    assert strict_json(run / "eval" / "metrics.json")["n"] == 60


def test_cli_evaluate_on_real_fashion_mnist(tmp_path, real_data_dir, capsys):
    run = tmp_path / "real"
    assert main(["train", "--epochs", "1", "--out", str(run), "--no-report",
                 "--data-dir", str(real_data_dir), "--offline"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    m = strict_json(run / "eval" / "metrics.json")
    assert m["n"] == 10000 and 0.7 < m["accuracy"] < 0.9 and m["expected_calibration_error"] < 0.1
    assert "ankle boot" in out and list(m["per_class_accuracy"])[-1] == "ankle boot"
