"""Faults a user, a disk or a diverging learning rate can cause: each ends in one clear line with
the README's exit code, and no run folder is left with a broken or half-written file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from softmaxlab import fsutil
from softmaxlab.cli import main

pytestmark = pytest.mark.usefixtures("isolated_data_env")


def cli(capsys, *argv: str) -> tuple[int, str]:
    """Run the command in this process: (exit code, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    return code, capsys.readouterr().err


def train(tiny_idx_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data-dir", str(tiny_idx_dir), "--out", str(out), "--batch-size", "16",
            "--no-report", *extra]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def assert_whole(run: Path) -> None:
    """Every file in the run folder is complete: JSON parses (no NaN), tensors load and are
    finite, no temp file is left, and the checkpoint's files are of one epoch."""
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    for path in run.rglob("*.json"):
        json.loads(path.read_text(), parse_constant=lambda c, p=path: pytest.fail(f"{p}: {c}"))
    for path in run.glob("*.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(path).values()), path
    if (run / "state.json").exists():
        from safetensors import safe_open

        epochs = {json.loads((run / "state.json").read_text())["epoch"],
                  len(json.loads((run / "history.json").read_text()))}
        for name in ("model.safetensors", "optimizer.safetensors"):
            with safe_open(run / name, framework="pt") as f:
                epochs.add(int(f.metadata()["epoch"]))
        assert len(epochs) == 1, epochs


# ----------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("extra", [["--loss", "mse", "--lr", "10"],
                                   ["--loss", "mse", "--lr", "1e30", "--epochs", "2"]])
def test_divergence_stops_with_exit_3_and_keeps_the_last_finite_epoch(tiny_idx_dir, tmp_path,
                                                                      capsys, extra):
    out = tmp_path / "run"
    code, err = cli(capsys, *train(tiny_idx_dir, out, *extra))
    assert code == 3
    line = one_error_line(err)
    match = re.search(r"training diverged in epoch (\d+): the training loss became (nan|inf)", line)
    assert match, line
    assert "smaller --lr than" in line and "another --loss" in line
    assert_whole(out)
    finite = int(match.group(1)) - 1  # the epochs before the one that diverged
    assert len(json.loads((out / "history.json").read_text())) == finite
    stopped = json.loads((out / "state.json").read_text())["stopped"]
    assert stopped["reason"] == "diverged" and stopped["epoch"] == finite + 1
    # the run can still be used: its (initial) weights are finite
    assert cli(capsys, "evaluate", str(out))[0] == 0


def test_divergence_after_good_epochs_keeps_them(tiny_idx_dir, tmp_path, capsys, monkeypatch):
    from softmaxlab import runner

    train_one = runner.Session.train_one

    def third_epoch_blows_up(self, epoch, wrap=None):
        result = train_one(self, epoch, wrap)
        if epoch == 2:
            self.model.W.data[0, 0] = float("inf")
        return result

    monkeypatch.setattr(runner.Session, "train_one", third_epoch_blows_up)
    out = tmp_path / "run"
    code, err = cli(capsys, *train(tiny_idx_dir, out, "--epochs", "5"))
    assert code == 3
    assert "epoch 3: the weights became non-finite" in one_error_line(err)
    assert f"{out} keeps the checkpoint of epoch 2" in err
    assert_whole(out)
    assert len(json.loads((out / "history.json").read_text())) == 2


def poison(run: Path, value: float = float("nan")) -> None:
    """Put a non-finite value into the run's weights, as a diverged older version saved them."""
    tensors = load_file(run / "model.safetensors")
    tensors["W"][3, 1] = value
    from safetensors import safe_open

    with safe_open(run / "model.safetensors", framework="pt") as f:
        meta = f.metadata()
    save_file(tensors, run / "model.safetensors", metadata=meta)


@pytest.mark.parametrize("command", ["predict", "evaluate", "report", "resume"])
def test_non_finite_weights_are_refused(tiny_idx_dir, tmp_path, capsys, command):
    out = tmp_path / "run"
    assert cli(capsys, *train(tiny_idx_dir, out, "--epochs", "1"))[0] == 0
    poison(out)
    argv = {"predict": ["predict", str(out), str(tiny_idx_dir / "x.png")],
            "evaluate": ["evaluate", str(out)], "report": ["report", str(out)],
            "resume": ["train", "--resume", str(out), "--epochs", "2"]}[command]
    code, err = cli(capsys, *argv)
    assert code == 2
    assert one_error_line(err).endswith(
        f"{out / 'model.safetensors'}: the tensor W holds non-finite values (nan or inf): the "
        "run diverged before this was saved; train a new run with a smaller --lr")


# ----------------------------------------------------------------------------- OS faults


def failing_writes(monkeypatch, err: int, after: int) -> None:
    """Every atomic write after the first ``after`` fails with ``err`` once its data is written
    (as a full disk fails a write): patched where the run folder's writers take it from."""
    real = fsutil.atomic_path
    count = 0

    @contextlib.contextmanager
    def atomic_path(path, *args, **kwargs):
        nonlocal count
        with real(path, *args, **kwargs) as tmp:
            count += 1
            yield tmp
            if count > after:
                raise OSError(err, os.strerror(err))

    for module in ("fsutil", "checkpoint", "plots"):
        monkeypatch.setattr(f"softmaxlab.{module}.atomic_path", atomic_path)


@pytest.mark.parametrize("err, hint", [
    (errno.ENOSPC, "free some space on that disk"),
    (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "you have no permission there"),
])
@pytest.mark.parametrize("after", [0, 3, 6])
def test_an_os_fault_while_writing_is_one_line_and_leaves_whole_files(tiny_idx_dir, tmp_path,
                                                                      capsys, monkeypatch, err,
                                                                      hint, after):
    """The fault strikes the config (after=0), the first checkpoint's files (3) or a later
    checkpoint (6): exit 2, the path and reason named, the folder holding only whole files."""
    out = tmp_path / "run"
    failing_writes(monkeypatch, err, after)
    code, stderr = cli(capsys, *train(tiny_idx_dir, out, "--epochs", "3"))
    assert code == 2
    line = one_error_line(stderr)
    assert line.startswith(f"softmaxlab train: error: cannot write {out}/")
    assert os.strerror(err) in line and hint in line
    assert_whole(out)
    if after == 6:  # the first checkpoint (4 files after the config) is there, whole
        assert json.loads((out / "state.json").read_text())["epoch"] == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KiB tmpfs (a full disk, for real); needs root and mount, as CI has."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs in CI: {r.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_for_real(tiny_idx_dir, small_disk, capsys):
    out = small_disk / "run"
    (small_disk / "filler").write_bytes(b"\0" * (400 << 10))  # leave room for a checkpoint
    code, err = cli(capsys, "train", "--data-dir", str(tiny_idx_dir), "--out", str(out),
                    "--epochs", "2")  # with the pictures and the report
    assert code == 2
    line = one_error_line(err)
    assert "No space left on device; free some space on that disk" in line
    assert_whole(out)
    (small_disk / "filler").unlink()
    assert cli(capsys, "train", "--resume", str(out), "--epochs", "2")[0] == 0


def test_a_read_only_file_system_for_real(tiny_idx_dir, small_disk, capsys):
    out = small_disk / "run"
    assert cli(capsys, *train(tiny_idx_dir, out, "--epochs", "1"))[0] == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code, err = cli(capsys, "train", "--resume", str(out), "--epochs", "2")
    assert code == 2
    assert "Read-only file system; the file system is read-only" in one_error_line(err)
    code, err = cli(capsys, *train(tiny_idx_dir, small_disk / "new", "--epochs", "1"))
    assert code == 2 and "Read-only file system" in one_error_line(err)
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert_whole(out)


def test_the_run_folder_removed_mid_run(tiny_idx_dir, tmp_path, capsys, monkeypatch):
    from softmaxlab import runner

    fit = runner.Session.fit
    out = tmp_path / "run"

    def fit_then_remove(self, history=(), callbacks=(), wrap=None):
        return fit(self, history, [*callbacks, lambda h: shutil.rmtree(out)], wrap)

    monkeypatch.setattr(runner.Session, "fit", fit_then_remove)
    code, err = cli(capsys, *train(tiny_idx_dir, out, "--epochs", "3"))
    assert code == 2
    line = one_error_line(err)
    assert f"cannot write {out}/" in line and "No such file or directory" in line
    assert "removed or moved meanwhile" in line
    assert not out.exists()  # not silently made again


def test_out_that_is_a_file(tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("mine")
    code, err = cli(capsys, *train(tiny_idx_dir, out))
    assert code == 2 and f"--out {out} is a file, not a folder" in err
    assert out.read_text() == "mine"


def test_too_many_threads_are_clamped_with_a_note(tiny_idx_dir, tmp_path, capsys):
    code, err = cli(capsys, *train(tiny_idx_dir, tmp_path / "run", "--epochs", "1", "--threads",
                                   "100000"))
    cores = len(os.sched_getaffinity(0))
    assert code == 0
    assert err.strip() == (f"note: --threads 100000 is more than the {cores} cores available "
                           f"here; using {cores}")


# ----------------------------------------------------------------------------- run-folder files


@pytest.fixture
def run(tiny_idx_dir, tmp_path) -> Path:
    """A good one-epoch run (momentum: its optimizer state has tensors)."""
    out = tmp_path / "run"
    assert main(train(tiny_idx_dir, out, "--epochs", "1", "--momentum", "0.9")) == 0
    return out


def rewrite_tensors(path: Path, change) -> None:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(path)
    tensors, meta = change(tensors, meta)
    save_file(tensors, path, metadata=meta)


def rewrite_json(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    path.write_text(json.dumps(change(obj)))


def _pop(d: dict, *keys):
    for key in keys[:-1]:
        d = d[key]
    d.pop(keys[-1])


MODEL_CASES = {
    "wrong shape": (lambda t, m: ({**t, "W": t["W"][:, :5].contiguous()}, m),
                    "the tensor W has shape (784, 5), expected (784, 10)"),
    "missing tensor": (lambda t, m: ({"W": t["W"]}, m), "the tensor b is missing"),
    "int64 weights": (lambda t, m: ({**t, "W": t["W"].long()}, m),
                      "the tensor W is torch.int64, not floating point"),
    "bad epoch": (lambda t, m: (t, {**m, "epoch": "one"}),
                  "its metadata's epoch is 'one', not a number of epochs"),
    "other format": (lambda t, m: (t, {}), "its metadata does not say format softmaxlab-run-1"),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
@pytest.mark.parametrize("command", ["resume", "evaluate", "predict"])
def test_a_bad_model_file_is_named_before_use(run, tiny_idx_dir, capsys, case, command):
    change, message = MODEL_CASES[case]
    rewrite_tensors(run / "model.safetensors", change)
    argv = {"resume": ["train", "--resume", str(run), "--epochs", "2"],
            "evaluate": ["evaluate", str(run)],
            "predict": ["predict", str(run), str(tiny_idx_dir)]}[command]
    code, err = cli(capsys, *argv)
    assert code == 2
    assert one_error_line(err).endswith(
        f"{run / 'model.safetensors'}: {message}; the run folder is damaged or was not written "
        "by softmaxlab")


def test_float64_weights_are_used_as_float32(run, capsys, tmp_path):
    from PIL import Image

    rewrite_tensors(run / "model.safetensors",
                    lambda t, m: ({k: v.double() for k, v in t.items()}, m))
    Image.new("L", (28, 28), 200).save(tmp_path / "x.png")
    assert cli(capsys, "predict", str(run), str(tmp_path / "x.png"))[0] == 0
    assert cli(capsys, "evaluate", str(run))[0] == 0


CONFIG_CASES = {
    "no config": (lambda c: {k: v for k, v in c.items() if k != "config"},
                  "the field config is missing"),
    "no class names": (lambda c: (_pop(c, "dataset", "class_names"), c)[1],
                       "the field dataset.class_names is missing"),
    "bad image shape": (lambda c: {**c, "dataset": {**c["dataset"], "image_shape": [28]}},
                        "the field dataset.image_shape is [28], not [height, width]"),
    "shape mismatch": (lambda c: {**c, "dataset": {**c["dataset"], "image_shape": [27, 28]}},
                       "dataset.num_features is 784, but image_shape [27, 28] has 756 pixels"),
    "bad option": (lambda c: {**c, "config": {**c["config"], "lr": -1}},
                   "the field config.lr=-1 is not allowed; it must be a number > 0"),
    "not an object": (lambda c: [c], "is not a softmaxlab-run-1 run config"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
@pytest.mark.parametrize("command", ["resume", "evaluate", "report"])
def test_a_bad_config_json_is_named_before_use(run, capsys, case, command):
    change, message = CONFIG_CASES[case]
    rewrite_json(run / "config.json", change)
    argv = {"resume": ["train", "--resume", str(run), "--epochs", "2"],
            "evaluate": ["evaluate", str(run)], "report": ["report", str(run)]}[command]
    code, err = cli(capsys, *argv)
    assert code == 2
    line = one_error_line(err)
    assert f"{run / 'config.json'}" in line and message in line


STATE_CASES = {
    "history epochs": ("history.json", lambda h: [{**h[0], "epoch": 7}],
                       "record 1: epoch is 7, expected 1"),
    "history number": ("history.json", lambda h: [{**h[0], "train_loss": "low"}],
                       "the field record 1 train_loss is 'low', not an integer or a number"),
    "state epoch": ("state.json", lambda s: {**s, "epoch": "1"},
                    "the field epoch is '1', not an integer"),
    "missing tensor": ("state.json",
                       lambda s: {**s, "optimizer_state": {"__tensor__": "state.9.nothing"}},
                       ("names the tensor 'state.9.nothing', which optimizer.safetensors does "
                        "not hold")),
}


@pytest.mark.parametrize("case", sorted(STATE_CASES))
def test_a_bad_checkpoint_is_refused_before_resuming(run, capsys, case):
    name, change, message = STATE_CASES[case]
    rewrite_json(run / name, change)
    code, err = cli(capsys, "train", "--resume", str(run), "--epochs", "2")
    assert code == 2 and message in one_error_line(err)


def test_a_wrong_shaped_momentum_buffer_is_refused(run, capsys):
    rewrite_tensors(run / "optimizer.safetensors",
                    lambda t, m: ({k: v[:3] for k, v in t.items()}, m))
    code, err = cli(capsys, "train", "--resume", str(run), "--epochs", "2")
    assert code == 2
    assert "'s momentum_buffer of 0 has shape (3, 10), which does not fit the model" in err


@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_a_bad_seed_is_refused_before_the_run_folder_exists(tiny_idx_dir, tmp_path, capsys, seed):
    out = tmp_path / "run"
    code, err = cli(capsys, *train(tiny_idx_dir, out, "--seed", seed))
    assert code == 2 and "Traceback" not in err
    assert f"argument --seed: {seed} is not allowed; it must be an integer from 0 to " \
           f"{2**63 - 1}" in err
    assert not out.exists()


def test_lbfgs_divergence_gives_its_own_hint(tiny_idx_dir, tmp_path, capsys, monkeypatch):
    from softmaxlab import runner

    train_one = runner.Session.train_one

    def blows_up(self, epoch, wrap=None):
        result = train_one(self, epoch, wrap)
        self.model.W.data[0, 0] = float("nan")
        return result

    monkeypatch.setattr(runner.Session, "train_one", blows_up)
    code, err = cli(capsys, *train(tiny_idx_dir, tmp_path / "run", "--optimizer", "lbfgs",
                                   "--lbfgs-iters", "2", "--epochs", "2"))
    assert code == 3
    assert "training diverged in epoch 1: the weights became non-finite; start a new run with " \
           "a larger --weight-decay or with --standardize" in one_error_line(err)
