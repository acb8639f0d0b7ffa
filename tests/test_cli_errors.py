"""Exit codes and error reports of the `softmaxlab` command (the README's table), run as a user
would: in a child process through the command's own entry point."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess

import pytest
from safetensors.torch import load_file

from conftest import PAUSE, command, train_args
from softmaxlab.cli import build_parser
from softmaxlab.errors import EXIT_DIVERGED, EXIT_SIGINT, EXIT_SIGPIPE, EXIT_SIGTERM

# a bare ValueError raised deep inside training: in the tuned path's gradient of a batch
BUG = """\
from softmaxlab import fast
def broken_grad(o_t, y, *keep):
    raise ValueError("a bug deep inside training")
fast.LOSSES_T["ce"] = (fast.LOSSES_T["ce"][0], broken_grad)
"""


def test_a_bug_deep_in_training_shows_its_traceback_and_exits_1(tiny_idx_dir, tmp_path):
    r = command(tiny_idx_dir, *train_args(tiny_idx_dir, tmp_path / "run"), patch=BUG)
    assert r.returncode == 1, r.stderr
    assert "Traceback (most recent call last)" in r.stderr
    assert "broken_grad" in r.stderr and "ValueError: a bug deep inside training" in r.stderr


def test_bad_input_is_one_line_and_exit_2(tiny_idx_dir, tmp_path):
    r = command(tiny_idx_dir, "train", "--momentum", "1.5")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "argument --momentum: 1.5 is not allowed; it must be in [0, 1)" in r.stderr
    r = command(tiny_idx_dir, "train", "--val-split", "10000", "--data-dir", str(tiny_idx_dir),
                "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        ("softmaxlab train: error: val_split=10000 leaves no training data: the training split "
         "has 120 examples")]


@pytest.mark.parametrize("how", ["--debug", "SOFTMAXLAB_DEBUG=1"])
def test_debug_shows_the_traceback_of_a_user_error(tiny_idx_dir, tmp_path, how):
    import os

    args = ["evaluate", str(tmp_path / "missing")]
    env = dict(os.environ)
    if how == "--debug":
        args.append("--debug")
    else:
        env["SOFTMAXLAB_DEBUG"] = "1"
    r = command(tiny_idx_dir, *args, env=env)
    assert r.returncode == 2
    assert "Traceback (most recent call last)" in r.stderr
    assert r.stderr.rstrip().endswith("softmaxlab evaluate: error: "
                                      f"{tmp_path / 'missing'} is not a folder; give the run "
                                      "folder that `softmaxlab train` wrote (it holds "
                                      "config.json and model.safetensors)")


def test_divergence_exits_3(tiny_idx_dir, tmp_path):
    out = tmp_path / "run"
    r = command(tiny_idx_dir, *train_args(tiny_idx_dir, out, "--loss", "mse", "--lr", "1e30"))
    assert r.returncode == EXIT_DIVERGED and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        "softmaxlab train: error: training diverged in epoch 1: the training loss became nan; "
        "start a new run with a smaller --lr than 1e+30 or another --loss (--resume would keep "
        f"this learning rate). {out} keeps its initial weights, the last finite ones")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, EXIT_SIGINT),
                                       (signal.SIGTERM, EXIT_SIGTERM)])
def test_a_signal_keeps_the_last_epoch_and_says_how_to_resume(tiny_idx_dir, tmp_path, sig, code):
    out = tmp_path / "run"
    child = command(tiny_idx_dir, *train_args(tiny_idx_dir, out, "--epochs", "3"), patch=PAUSE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stderr.readline().strip() == "EPOCH 1 DONE"
        child.send_signal(sig)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == code, err
    assert "Traceback" not in err
    assert f"stopped after epoch 1; the run folder holds that epoch's checkpoint. Continue " \
           f"with: softmaxlab train --resume {out}" in err
    assert len(json.loads((out / "history.json").read_text())) == 1
    # resuming ends where an uninterrupted run ends, bit for bit
    assert command(tiny_idx_dir, "train", "--resume", str(out)).returncode == 0
    full = tmp_path / "full"
    assert command(tiny_idx_dir, *train_args(tiny_idx_dir, full, "--epochs", "3")).returncode == 0
    a, b = load_file(out / "model.safetensors"), load_file(full / "model.safetensors")
    assert all(a[k].equal(b[k]) for k in ("W", "b"))


@pytest.mark.parametrize("argv", [["train", "--epochs", "1"], ["evaluate", "RUN"],
                                  ["report", "RUN"], ["predict", "RUN", "nofile.png"]])
def test_the_parsed_args_are_read_never_written(tiny_idx_dir, tmp_path, argv):
    run = tmp_path / "run"
    from softmaxlab.cli import main

    assert main(train_args(tiny_idx_dir, run, "--epochs", "1")) == 0
    argv = [str(run) if a == "RUN" else a for a in argv]
    if argv[0] == "train":
        argv += ["--data-dir", str(tiny_idx_dir), "--out", str(tmp_path / "other"),
                 "--no-report"]
    args = build_parser().parse_args(argv)
    before = dict(vars(args))
    args.handler(args)
    assert vars(args) == before
    assert isinstance(args, argparse.Namespace)


def test_a_closed_output_pipe_stops_quietly_with_141(tmp_path):
    """`softmaxlab data list | head -1`: the reader goes away before the output is written."""
    import os
    import sys

    read, write = os.pipe()
    os.close(read)  # nobody will read: the first write gets EPIPE
    with open(tmp_path / "err", "w") as err:
        code = subprocess.run([sys.executable, "-m", "softmaxlab", "data", "list"], stdout=write,
                              stderr=err, timeout=120, check=False).returncode
    os.close(write)
    assert code == EXIT_SIGPIPE
    assert (tmp_path / "err").read_text() == ""  # no traceback, no message
