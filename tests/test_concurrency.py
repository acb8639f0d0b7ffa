"""One writer per run folder, and a run killed with SIGKILL resumes to the uninterrupted result."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from safetensors.torch import load_file

from conftest import PAUSE, command, train_args
from softmaxlab.runfolder import LOCK_FILE


@pytest.fixture
def paused_run(tiny_idx_dir, tmp_path):
    """A `softmaxlab train` child that finished epoch 1 of 3 and waits, holding its run folder."""
    out = tmp_path / "run"
    child = command(tiny_idx_dir, *train_args(tiny_idx_dir, out, "--epochs", "3"), patch=PAUSE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stderr.readline().strip() == "EPOCH 1 DONE"
        yield out, child
    finally:
        child.kill()
        child.communicate()


def test_a_second_writer_fails_at_once_naming_the_first(tiny_idx_dir, paused_run, tmp_path):
    out, child = paused_run
    assert (out / LOCK_FILE).read_text().strip() == str(child.pid)
    in_use = (f"{out} is in use by process {child.pid} (another softmaxlab command is writing "
              "it); wait for it to finish, or use another folder")
    for argv in (train_args(tiny_idx_dir, out, "--force"), ["train", "--resume", str(out)],
                 ["evaluate", str(out)], ["report", str(out)]):
        r = command(tiny_idx_dir, *argv)
        assert r.returncode == 2, (argv, r.stderr)
        assert r.stderr.strip() == f"softmaxlab {argv[0]}: error: {in_use}", argv
    # predict only reads: it takes no lock
    from PIL import Image

    Image.new("L", (28, 28), 90).save(tmp_path / "x.png")
    assert command(tiny_idx_dir, "predict", str(out), str(tmp_path / "x.png")).returncode == 0
    # nothing of the first run was touched
    assert len(json.loads((out / "history.json").read_text())) == 1


def test_two_trainings_into_one_folder_never_both_succeed(tiny_idx_dir, tmp_path):
    out = tmp_path / "run"
    runs = [command(tiny_idx_dir, *train_args(tiny_idx_dir, out, "--epochs", "2", "--lr", lr),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for lr in ("0.1", "0.05")]
    results = [(r.wait(timeout=120), r.communicate()[1]) for r in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for code, e in results if code == 2)
    assert "is in use by process" in err or "is not empty" in err
    saved = json.loads((out / "config.json").read_text())["config"]["lr"]
    winner = next(lr for (code, _), lr in zip(results, (0.1, 0.05)) if code == 0)
    assert saved == winner


def test_the_lock_file_alone_does_not_make_out_non_empty(tiny_idx_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text("123\n")
    r = command(tiny_idx_dir, *train_args(tiny_idx_dir, out, "--epochs", "1"))
    assert r.returncode == 0, r.stderr


def test_sigkill_then_resume_equals_an_uninterrupted_run(tiny_idx_dir, paused_run, tmp_path):
    out, child = paused_run
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    r = command(tiny_idx_dir, "train", "--resume", str(out))  # the lock died with the child
    assert r.returncode == 0, r.stderr
    full = tmp_path / "full"
    assert command(tiny_idx_dir, *train_args(tiny_idx_dir, full, "--epochs", "3")).returncode == 0
    a, b = load_file(out / "model.safetensors"), load_file(full / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    ha = json.loads((out / "history.json").read_text())
    hb = json.loads((full / "history.json").read_text())
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]
