"""`softmaxlab train` from the command line: the run folder, recipes, resume, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from softmaxlab.checkpoint import load_trained
from softmaxlab.cli import main
from softmaxlab.config import RECIPES, TrainConfig
from softmaxlab.data import load_dataset


def run_cli(*argv: str) -> int:
    return main(list(argv))


def test_train_cli_writes_the_run_folder(tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "--epochs", "2", "--batch-size", "32", "--data-dir", str(tiny_idx_dir),
                   "--out", str(out), "--no-report") == 0
    stdout = capsys.readouterr().out
    assert "epoch   2/2" in stdout and str(out) in stdout
    for name in ("config.json", "history.json", "model.safetensors", "optimizer.safetensors",
                 "state.json", "curves.png", "predictions.png"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert [set(r) >= {"epoch", "train_loss", "train_acc", "test_acc", "seconds"}
            for r in history] == [True, True]
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["batch_size"] == 32 and config["dataset"]["num_classes"] == 10
    assert not list(out.glob(".*.tmp"))
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_cli_refuses_a_non_empty_out_and_force_replaces_only_a_run(tiny_idx_dir, tmp_path,
                                                                          capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for force in ([], ["--force"]):
        with pytest.raises(SystemExit) as e:
            run_cli("train", "--epochs", "1", "--data-dir", str(tiny_idx_dir), "--out", str(out),
                    *force)
        assert e.value.code == 2
        assert ("holds files softmaxlab did not write (keep.txt)" if force else "not empty") \
            in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"


def test_force_replaces_the_old_runs_report_and_eval(tiny_idx_dir, tmp_path):
    """`train --force --no-report` into an old run folder leaves nothing of the old run."""
    out = tmp_path / "run"
    data = ["--data-dir", str(tiny_idx_dir)]
    assert run_cli("train", "--epochs", "2", *data, "--out", str(out)) == 0
    assert run_cli("evaluate", str(out), *data) == 0
    assert (out / "report.html").is_file() and (out / "eval" / "metrics.json").is_file()
    assert run_cli("train", "--epochs", "1", *data, "--out", str(out), "--force",
                   "--no-report") == 0
    assert not (out / "report.html").exists() and not (out / "eval").exists()
    assert len(json.loads((out / "history.json").read_text())) == 1


@pytest.mark.parametrize("recipe", ["best", "fast"])
def test_recipe_presets_and_explicit_options_override_them(recipe, tiny_idx_dir, tmp_path):
    out = tmp_path / recipe
    assert run_cli("train", "--recipe", recipe, "--epochs", "2", "--data-dir", str(tiny_idx_dir),
                   "--out", str(out), "--no-report") == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    want = TrainConfig(**{**RECIPES[recipe], "epochs": 2}).to_dict()
    assert saved == want and saved["momentum"] == 0.9 and saved["lr_schedule"] == "cosine"
    history = json.loads((out / "history.json").read_text())
    lrs = [r["lr"] for r in history]
    assert lrs[0] == RECIPES[recipe]["lr"] and lrs[1] < lrs[0]  # cosine over the 2 epochs


@pytest.mark.parametrize("args", [["--lr", "0"], ["--batch-size", "0"], ["--epochs", "-1"],
                                  ["--impl", "foo"], ["--lr", "nan"], ["--momentum", "-1"]])
def test_train_cli_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli("train", *args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err


@pytest.mark.parametrize("extra", [[], ["--momentum", "0.9", "--weight-decay", "1e-3",
                                        "--lr-schedule", "cosine", "--standardize", "--augment"],
                                   ["--impl", "concise", "--loss", "mse"],
                                   ["--optimizer", "lbfgs", "--lbfgs-iters", "3"]])
def test_resume_equals_an_uninterrupted_run(extra, tiny_idx_dir, tmp_path):
    common = ["--batch-size", "16", "--seed", "3", "--data-dir", str(tiny_idx_dir), "--no-report",
              *extra]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_cli("train", "--epochs", "3", "--out", str(full), *common) == 0
    assert run_cli("train", "--epochs", "1", "--out", str(part), *common) == 0
    assert run_cli("train", "--resume", str(part), "--epochs", "3") == 0
    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ha = json.loads((full / "history.json").read_text())
    hb = json.loads((part / "history.json").read_text())
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]


def test_resume_keeps_the_run_options(tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "--epochs", "1", "--data-dir", str(tiny_idx_dir), "--out", str(out),
                   "--no-report") == 0
    with pytest.raises(SystemExit) as e:
        run_cli("train", "--resume", str(out), "--epochs", "2", "--lr", "0.5")
    assert e.value.code == 2 and "--lr" in capsys.readouterr().err
    assert run_cli("train", "--resume", str(out), "--epochs", "1") == 0
    assert "already trained" in capsys.readouterr().out
    assert run_cli("train", "--resume", str(tmp_path / "nope"), "--epochs", "2") == 2
    assert "not a folder" in capsys.readouterr().err


def test_resume_detects_files_from_different_epochs(tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "--epochs", "2", "--data-dir", str(tiny_idx_dir), "--out", str(out),
                   "--no-report") == 0
    history = json.loads((out / "history.json").read_text())
    (out / "history.json").write_text(json.dumps(history[:1]))
    assert run_cli("train", "--resume", str(out), "--epochs", "3") == 2
    assert "different epochs" in capsys.readouterr().err


def test_standardize_is_saved_and_applied_when_loading(tiny_idx_dir, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "--epochs", "2", "--standardize", "--data-dir", str(tiny_idx_dir),
                   "--out", str(out), "--no-report") == 0
    model = load_trained(out)
    assert model.standardizer is not None
    _train, test = load_dataset(data_dir=tiny_idx_dir)
    acc = (model.predict_proba(test.to_float()).argmax(1) == test.labels).float().mean().item()
    history = json.loads((out / "history.json").read_text())
    assert acc == pytest.approx(history[-1]["test_acc"])


def test_module_entry_point_and_version():
    r = subprocess.run([sys.executable, "-m", "softmaxlab", "--version"], capture_output=True,
                       text=True, check=True)
    assert r.stdout.startswith("softmaxlab ")


def test_the_command_ends_with_its_exit_code_and_all_its_output(tiny_idx_dir, tmp_path):
    """`softmaxlab` ends the process itself (skipping torch's teardown): its piped output must
    still be complete and its exit codes right. (The child accepts the tiny files' md5s.)"""
    from conftest import raw_md5s

    child = ("import dataclasses, sys\n"
             "from softmaxlab.data.specs import SPECS\n"
             f"SPECS['fashion-mnist'] = dataclasses.replace(SPECS['fashion-mnist'], md5_gz={{}}, "
             f"md5_raw={raw_md5s(tiny_idx_dir)!r})\n"
             "from softmaxlab.cli import run\n"
             "run(sys.argv[1:])\n")

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", child, *args], capture_output=True,
                              text=True, check=False)

    out = tmp_path / "run"
    r = command("train", "--epochs", "2", "--batch-size", "32", "--data-dir", str(tiny_idx_dir),
                "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-4:] == [f"run folder: {out}", f"  {out / 'curves.png'}",
                                          f"  {out / 'predictions.png'}",
                                          f"  {out / 'report.html'}"]
    assert (out / "report.html").read_text().rstrip().endswith("</html>")
    r = command("train", "--lr", "0")
    assert r.returncode == 2 and "usage:" in r.stderr and "Traceback" not in r.stderr
    r = command("train", "--data-dir", str(tmp_path / "none"), "--offline", "--out",
                str(tmp_path / "r2"))
    assert r.returncode == 2 and r.stderr.startswith("softmaxlab train: error: ")
    r = command("--help")
    assert r.returncode == 0 and "train" in r.stdout and not r.stderr


@pytest.mark.parametrize("impl", ["scratch", "concise"])
def test_default_train_on_real_fashion_mnist(impl, real_data_dir, tmp_path, capsys):
    out = tmp_path / impl
    assert run_cli("train", "--impl", impl, "--out", str(out), "--data-dir", str(real_data_dir),
                   "--no-report") == 0
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 10
    assert history[-1]["test_acc"] >= 0.82
    assert history[-1]["train_loss"] < 0.5 and history[-1]["train_acc"] > 0.83
