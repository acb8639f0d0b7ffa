"""`softmaxlab train --dataset SPEC` and the commands after it (evaluate, --resume, report, show,
predict) on your own data in every format; the run records the data and reads it again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from formats_helpers import (
    digits,
    write_csv,
    write_idx_dir,
    write_image_folder,
    write_npy_dir,
    write_npz,
    write_parquet,
)
from softmaxlab.cli import main

NAMES = tuple(f"digit {i}" for i in range(10))


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def make(kind: str, root: Path) -> tuple[str, list[str]]:
    """The digits written as ``kind``: (spec, extra train options)."""
    train, test = digits()
    if kind == "idx":
        return f"idx:{write_idx_dir(root / 'idx', train, test)}", []
    if kind == "csv":  # one file; the test set held out
        return f"csv:{write_csv(root / 'digits.csv', train)}", ["--test-split", "0.25"]
    if kind == "npz":
        return str(write_npz(root / "digits.npz", train, test)), []
    if kind == "npy":
        return f"npy:{write_npy_dir(root / 'npy', train, test)}", []
    if kind == "parquet":
        write_parquet(root / "test.parquet", test, NAMES)
        return str(write_parquet(root / "train.parquet", train, NAMES)), [
            "--test-data", str(root / "test.parquet"), "--image-size", "8"]
    write_image_folder(root / "folder" / "train", train, NAMES)
    write_image_folder(root / "folder" / "test", test, NAMES)
    return f"folder:{root / 'folder'}", ["--image-size", "8"]


KINDS = ["idx", "csv", "npz", "npy", "parquet", "folder"]


@pytest.mark.parametrize("kind", KINDS)
def test_train_evaluate_resume_report_show_on_own_data(kind, tmp_path, capsys):
    spec, extra = make(kind, tmp_path)
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--dataset", spec, *extra, "--epochs", "2",
                         "--batch-size", "64", "--out", str(run))
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    record = config["data"]
    assert Path(record["sources"]["train"]["path"]).is_absolute()
    assert record["sources"]["train"]["checksum"].startswith("sha256:")
    assert config["dataset"]["image_shape"] == [8, 8] and config["dataset"]["num_classes"] == 10
    assert json.loads((run / "history.json").read_text())[-1]["test_acc"] > 0.8
    assert cli(capsys, "evaluate", str(run))[0] == 0
    assert cli(capsys, "report", str(run))[0] == 0
    code, _, err = cli(capsys, "train", "--resume", str(run), "--epochs", "3")
    assert code == 0, err
    code, _out, _ = cli(capsys, "show", "--dataset", spec, *extra, "--n", "4",
                       "--out", str(tmp_path / "grid.png"))
    assert code == 0 and (tmp_path / "grid.png").is_file()


@pytest.mark.parametrize("kind", ["npz", "csv"])
def test_a_changed_file_is_reported_not_used(kind, tmp_path, capsys):
    spec, extra = make(kind, tmp_path)
    run = tmp_path / "run"
    assert cli(capsys, "train", "--dataset", spec, *extra, "--epochs", "1", "--out", str(run),
               "--no-report")[0] == 0
    path = Path(json.loads((run / "config.json").read_text())["data"]["sources"]["train"]["path"])
    data = bytearray(path.read_bytes())
    data[-2] = ord("7") if data[-2] != ord("7") else ord("3")  # one value changes
    path.write_bytes(bytes(data))
    for argv in (["evaluate", str(run)], ["train", "--resume", str(run), "--epochs", "2"]):
        code, _, err = cli(capsys, *argv)
        assert code == 2, err
        assert str(path) in err and "changed" in err and "Traceback" not in err


def test_predict_applies_the_runs_recorded_image_preprocessing(tmp_path, capsys):
    """A folder run trained with --invert always --trim: predict makes photos the same way."""
    from PIL import Image

    train, test = digits()
    for split, arrays in (("train", train), ("test", test)):
        dark = arrays.__class__(255 - arrays.images, arrays.labels)  # dark digits on white
        write_image_folder(tmp_path / "photos" / split, dark, NAMES)
    run = tmp_path / "run"
    assert cli(capsys, "train", "--dataset", f"folder:{tmp_path / 'photos'}", "--image-size", "8",
               "--invert", "always", "--trim", "--epochs", "3", "--out", str(run),
               "--no-report")[0] == 0
    made = json.loads((run / "config.json").read_text())["data"]["image_preprocessing"]
    assert made == {"size": 8, "invert": "always", "trim": True}
    # a test image as a photo: dark on white, as the training files were
    photo = tmp_path / "photo.png"
    Image.fromarray(255 - test.images[0]).resize((64, 64)).save(photo)
    code, out, err = cli(capsys, "predict", str(run), str(photo), "--top-k", "1", "--json",
                         "--save-inputs", str(tmp_path / "seen"))
    assert code == 0, err
    seen = np.asarray(Image.open(tmp_path / "seen" / "photo.png"))
    assert seen.mean() < 128  # inverted as in training: a light digit on black
    assert json.loads(out)[0]["top"][0]["label"] in NAMES


def test_own_data_options_are_refused_for_a_named_dataset_and_on_resume(tmp_path, capsys,
                                                                       tiny_idx_dir):
    code, _, err = cli(capsys, "train", "--test-split", "0.3", "--data-dir", str(tiny_idx_dir),
                       "--out", str(tmp_path / "run"))
    assert code == 2 and "--test-split apply to your own data, not to the named dataset" in err
    assert not (tmp_path / "run").exists()
    spec, _extra = make("npz", tmp_path)
    run = tmp_path / "own"
    assert cli(capsys, "train", "--dataset", spec, "--epochs", "1", "--out", str(run),
               "--no-report")[0] == 0
    code, _, err = cli(capsys, "train", "--resume", str(run), "--image-size", "10")
    assert code == 2 and "--image-size cannot be combined with --resume" in err


def test_same_parameters_from_a_file_and_from_its_arrays(tmp_path, capsys):
    """The npz and the IDX folder of the same arrays train to the same weights, bit for bit."""
    runs = []
    for kind in ("npz", "idx"):
        spec, _extra = make(kind, tmp_path)
        run = tmp_path / f"run-{kind}"
        assert cli(capsys, "train", "--dataset", spec, "--epochs", "2", "--out", str(run),
                   "--no-report")[0] == 0
        runs.append(load_file(run / "model.safetensors"))
    assert all(runs[0][k].equal(runs[1][k]) for k in runs[0])
