"""The data options of the CLI: a PNG of the tiny dataset, and clean errors (exit 2, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_idx_files
from softmaxlab.cli import main

pytestmark = pytest.mark.usefixtures("isolated_data_env")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``softmaxlab *argv`` in-process; returns (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_show_writes_a_png(tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code, stdout, stderr = run_cli(capsys, "show", "--out", str(out), "--data-dir",
                                   str(tiny_idx_dir), "--n", "12", "--split", "test")
    assert code == 0, stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("command", [["show"], ["train", "--epochs", "1"]])
def test_data_not_found_exits_2_with_the_message(tmp_path, capsys, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, stderr = run_cli(capsys, *command, "--data-dir", str(empty), "--offline",
                              *(["--out", str(tmp_path / "run")] if "train" in command else []))
    assert code == 2
    assert f"softmaxlab {command[0]}: error: fashion-mnist not found" in stderr
    assert f"{empty} (given by --data-dir; none of the files)" in stderr
    assert "sudo apt-get install dataset-fashion-mnist" in stderr
    assert "--data-dir DIR" in stderr
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" in stderr
    assert "Traceback" not in stderr
    assert list(empty.iterdir()) == []


def test_offline_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SOFTMAXLAB_OFFLINE", "1")
    code, _, stderr = run_cli(capsys, "show", "--data-dir", str(tmp_path / "none"))
    assert code == 2 and "Downloading is off" in stderr
    assert not (tmp_path / "none").exists()


def test_softmaxlab_data_from_the_environment(tiny_idx_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SOFTMAXLAB_DATA", str(tiny_idx_dir))
    code, _, stderr = run_cli(capsys, "show", "--out", str(tmp_path / "g.png"), "--offline")
    assert code == 0, stderr


def test_a_truncated_file_exits_2_naming_it(tiny_idx_dir, tmp_path, capsys):
    path = tiny_idx_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    code, _, stderr = run_cli(capsys, "show", "--data-dir", str(tiny_idx_dir), "--out",
                              str(tmp_path / "g.png"))
    assert code == 2
    assert f"error: {path}: broken gzip data" in stderr
    assert "delete or replace it" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "g.png").exists()


def test_a_wrong_file_exits_2_naming_it(tiny_idx_dir, tmp_path, capsys):
    other = make_idx_files(tmp_path / "other", seed=3)
    os.replace(other / "t10k-images-idx3-ubyte.gz", tiny_idx_dir / "t10k-images-idx3-ubyte.gz")
    code, _, stderr = run_cli(capsys, "show", "--data-dir", str(tiny_idx_dir), "--out",
                              str(tmp_path / "g.png"))
    assert code == 2
    assert f"error: {tiny_idx_dir / 't10k-images-idx3-ubyte.gz'}: checksum mismatch" in stderr
    assert "Traceback" not in stderr


def test_a_bad_mirror_exits_2(tmp_path, capsys):
    code, _, stderr = run_cli(capsys, "show", "--data-dir", str(tmp_path), "--mirror", "nowhere")
    assert code == 2
    assert "--mirror 'nowhere' is not a URL" in stderr and "Traceback" not in stderr


def test_not_found_through_a_real_process(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOFTMAXLAB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "softmaxlab", "show", "--data-dir", str(empty), "--offline"],
        check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    assert "fashion-mnist not found" in proc.stderr and "Traceback" not in proc.stderr
    assert Path(empty).is_dir() and list(empty.iterdir()) == []
