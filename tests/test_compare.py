"""softmaxlab.compare and the `losses` / `compare-losses` commands (tiny IDX data from conftest)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from softmaxlab import compare
from softmaxlab.cli import main
from softmaxlab.data import load_dataset
from softmaxlab.runner import Session
from softmaxlab.train import LOSSES

# --------------------------------------------------------------------------- the loss curves


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("y", [0.0, 0.7])
def test_loss_curves_follow_the_closed_forms(delta, y):
    l2, l1, huber = compare.loss_curves(delta=delta, y=y)
    for c in (l2, l1, huber):
        assert c.target == y
        assert c.x[0] == -3.0 and c.x[-1] == 3.0 and (c.x.diff() > 0).all()
        assert c.loss.shape == c.grad.shape == c.likelihood.shape == c.x.shape
        torch.testing.assert_close(c.likelihood, torch.exp(-c.loss))
    r = l2.x - y
    torch.testing.assert_close(l2.loss, 0.5 * r**2)
    torch.testing.assert_close(l2.grad, r)
    r = l1.x - y
    torch.testing.assert_close(l1.loss, r.abs())
    assert ((l1.grad == 1) | (l1.grad == -1) | ((l1.grad == 0) & (r == 0))).all()
    assert (l1.grad[l1.x == y] == 0).all() and (l1.x == y).sum() == 1  # the kink is drawn
    r = huber.x - y
    inside = r.abs() <= delta
    torch.testing.assert_close(huber.loss[inside], 0.5 * r[inside] ** 2)
    torch.testing.assert_close(huber.loss[~inside], delta * (r[~inside].abs() - 0.5 * delta))
    torch.testing.assert_close(huber.grad, r.clamp(-delta, delta))
    assert huber.kinks == (y - delta, y + delta)
    assert f"δ = {delta:g}" in huber.name


@pytest.mark.parametrize("kwargs,match", [
    ({"delta": 0.0}, "delta=0.0"),
    ({"delta": -1.0}, "delta=-1.0"),
    ({"lo": 1.0, "hi": 1.0}, "empty"),
    ({"n": 1}, "n=1"),
])
def test_loss_curves_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare.loss_curves(**kwargs)


# ------------------------------------------------------------------ training with each loss


def test_loss_configs_differ_only_in_the_loss_and_its_lr():
    ce, mse = compare.loss_configs(("ce", "mse"), epochs=3, batch_size=32, seed=5)
    assert (ce.loss, mse.loss) == ("ce", "mse")
    assert (ce.learning_rate, mse.learning_rate) == (LOSSES["ce"].default_lr,
                                                     LOSSES["mse"].default_lr)
    a, b = ce.to_dict(), mse.to_dict()
    assert {k for k in a if a[k] != b[k]} == {"loss"}  # lr is None in both: each loss's default
    assert ce.impl == "scratch" and ce.seed == 5 and ce.epochs == 3 and ce.batch_size == 32


@pytest.mark.parametrize("losses,match", [((), "no loss"), (("ce", "ce"), "twice"),
                                          (("ce", "hinge"), "loss='hinge' is not allowed")])
def test_loss_configs_bad_losses(losses, match):
    with pytest.raises(ValueError, match=match):
        compare.loss_configs(losses)


def test_compare_losses_trains_each_loss_from_the_same_start(tiny_idx_dir):
    train, test = load_dataset(data_dir=tiny_idx_dir)
    configs = compare.loss_configs(epochs=2, batch_size=32, seed=3)
    # the same start: both sessions draw the same initial weights
    w0 = [Session(c, train, test).model.W.detach().clone() for c in configs]
    assert torch.equal(w0[0], w0[1])
    seen = []
    runs = compare.compare_losses(train, test, configs,
                                  on_epoch=lambda name, h: seen.append((name, len(h))))
    assert [r.loss for r in runs] == ["ce", "mse"]
    assert seen == [("ce", 1), ("ce", 2), ("mse", 1), ("mse", 2)]
    for run, config in zip(runs, configs):
        assert [row["epoch"] for row in run.history] == [1, 2]
        # the same as training that loss alone with the same options
        alone = Session(config, train, test).fit()
        for got, want in zip(run.history, alone):
            assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)
            assert got["test_acc"] == want["test_acc"]
    assert runs[0].history[-1]["train_loss"] != runs[1].history[-1]["train_loss"]


def test_summary_lists_the_last_epoch_of_each_run():
    cfg = compare.loss_configs(epochs=2)
    runs = [
        compare.LossRun(cfg[0], [{"epoch": 1, "train_loss": 0.9, "train_acc": 0.5, "test_acc": 0.4},
                                 {"epoch": 2, "train_loss": 0.61234, "train_acc": 0.75,
                                  "test_acc": 0.7}]),
        compare.LossRun(cfg[1], [{"epoch": 1, "train_loss": 0.2, "train_acc": 0.6,
                                  "test_acc": 0.55}]),
    ]
    rows = compare.summary_rows(runs)
    assert rows[0] == {"loss": "ce", "lr": 0.1, "epochs": 2, "train_loss": 0.61234,
                       "train_acc": 0.75, "test_acc": 0.7}
    assert rows[1]["epochs"] == 1 and rows[1]["lr"] == 0.01
    text = compare.summary_markdown(runs)
    assert "| ce | 0.1 | 2 | 0.6123 | 0.7500 | 0.7000 |" in text
    assert "| mse | 0.01 | 1 | 0.2000 | 0.6000 | 0.5500 |" in text
    assert "not comparable" in text
    with pytest.raises(ValueError, match="no epoch"):
        compare.summary_rows([compare.LossRun(cfg[0], [])])


# --------------------------------------------------------------------------- the commands


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_losses_cli_writes_the_picture(tmp_path, capsys):
    out = tmp_path / "pics" / "losses.png"
    assert main(["losses", "--delta", "0.5", "--out", str(out)]) == 0
    w, h = png_size(out)
    assert 900 <= w <= 2500 and 300 <= h <= 900 and w > 2 * h  # three panels side by side
    pixels = np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3).astype(int)
    for rgb in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):  # blue, orange, green curves
        assert (np.abs(pixels - rgb).sum(1) < 30).sum() > 500
    assert str(out) in capsys.readouterr().out


def test_losses_cli_default_out_is_losses_png(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["losses"]) == 0
    assert (tmp_path / "losses.png").is_file()


@pytest.mark.parametrize("delta", ["-1", "0", "nan", "x"])
def test_losses_cli_bad_delta_is_a_usage_error(delta, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["losses", "--delta", delta, "--out", str(tmp_path / "l.png")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--delta" in err and "Traceback" not in err
    assert not (tmp_path / "l.png").exists()


def test_compare_losses_cli_writes_curves_histories_and_summary(tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare-losses", "--epochs", "2", "--batch-size", "32", "--seed", "1",
            "--data-dir", str(tiny_idx_dir), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "histories.json", "summary.md"]
    w, h = png_size(out / "curves.png")
    assert 700 <= w <= 2000 and 250 <= h <= 800
    histories = json.loads((out / "histories.json").read_text())
    assert list(histories) == ["ce", "mse"]
    for name, entry in histories.items():
        assert entry["lr"] == LOSSES[name].default_lr
        assert entry["config"]["loss"] == name and entry["config"]["seed"] == 1
        assert [row["epoch"] for row in entry["history"]] == [1, 2]
        last = entry["history"][-1]
        line = (f"| {name} | {entry['lr']:g} | 2 | {last['train_loss']:.4f} | "
                f"{last['train_acc']:.4f} | {last['test_acc']:.4f} |")
        assert line in (out / "summary.md").read_text() and line in stdout
    assert stdout.count("epoch   2/2") == 2


def test_compare_losses_cli_refuses_a_non_empty_out_unless_forced(tiny_idx_dir, tmp_path,
                                                                   capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    argv = ["compare-losses", "--epochs", "1", "--data-dir", str(tiny_idx_dir), "--out",
            str(out), "--no-progress"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert main(argv + ["--force"]) == 0
    assert (out / "histories.json").is_file() and (out / "keep.txt").is_file()


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--batch-size", "-2"], ["--seed", "a"]])
def test_compare_losses_cli_bad_options_exit_2(args, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["compare-losses", *args, "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
