"""``softmaxlab predict``: classify image files of your own with a trained run's model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import accept_files, make_idx_files
from softmaxlab import images
from softmaxlab.checkpoint import TrainedModel, load_trained
from softmaxlab.cli import main
from softmaxlab.images import load_image
from softmaxlab.predict import predict_files

WHITE = 255

# epochs of the model trained on the real Fashion-MNIST (the drawn trouser needs no more)
REAL_EPOCHS = 5


def run_cli(*argv: str) -> int:
    """``softmaxlab ARGV``'s exit code, also when argparse exits (usage errors)."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:
        return int(e.code)


def train_run(out: Path, data_dir: Path, epochs: int) -> Path:
    # one thread: as fast on this small model, and far faster on a machine busy with other work
    assert run_cli("train", "--epochs", epochs, "--threads", 1, "--data-dir", data_dir, "--out",
                   out, "--no-report") == 0
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder trained for one epoch on conftest's tiny IDX dataset (Fashion-MNIST's names)."""
    root = tmp_path_factory.mktemp("tiny-run")
    data = make_idx_files(root / "tiny")
    with pytest.MonkeyPatch.context() as mp:
        accept_files(mp, data)  # only loading the data checks md5s, not using the model
        return train_run(root / "run", data, 1)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, real_data_dir) -> Path:
    """A run folder trained on the real Fashion-MNIST (skipped without it, failed in CI)."""
    return train_run(tmp_path_factory.mktemp("real-run") / "run", real_data_dir, REAL_EPOCHS)


# --------------------------------------------------------------------------- drawn products


def draw_trouser() -> Image.Image:
    """Dark trousers on white: a waistband and two tall legs, slightly flared, with a gap."""
    img = Image.new("L", (200, 300), WHITE)
    d = ImageDraw.Draw(img)
    d.rectangle((55, 20, 145, 60), fill=40)  # waistband and hips
    d.polygon([(55, 20), (97, 20), (92, 280), (50, 280)], fill=40)  # left leg
    d.polygon([(103, 20), (145, 20), (150, 280), (108, 280)], fill=40)  # right leg
    return img


def draw_bag() -> Image.Image:
    """A dark bag on white: a wide body with an arched handle on top."""
    img = Image.new("L", (300, 260), WHITE)
    d = ImageDraw.Draw(img)
    d.rectangle((30, 100, 270, 240), fill=60)  # body
    d.arc((90, 20, 210, 180), start=180, end=360, fill=60, width=14)  # handle
    return img


@pytest.fixture
def photos(tmp_path) -> dict[str, Path]:
    """The drawn trouser (PNG), the drawn bag (JPEG) and a file that is not an image."""
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = {"trouser": folder / "trouser.png", "bag": folder / "bag.jpg",
             "broken": folder / "broken.png"}
    draw_trouser().save(paths["trouser"])
    draw_bag().save(paths["bag"], quality=90)
    paths["broken"].write_bytes(b"this is not a PNG")
    return paths


def predict_json(capsys, *argv) -> tuple[int, list[dict]]:
    code = run_cli("predict", *argv, "--json")
    return code, json.loads(capsys.readouterr().out)


def check_top(entry: dict, class_names: tuple[str, ...], k: int) -> None:
    """The invariants of one file's top-k list."""
    top = entry["top"]
    assert len(top) == k
    assert set(entry) == {"file", "top"}
    for item in top:
        assert set(item) == {"index", "label", "probability"}
        assert item["label"] == class_names[item["index"]]
        assert 0.0 <= item["probability"] <= 1.0
    probs = [item["probability"] for item in top]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) <= 1.0 + 1e-6
    assert len({item["index"] for item in top}) == k


# --------------------------------------------------------------------------- the real model


def test_drawn_trouser_and_bag_on_the_real_model(real_run, photos, capsys):
    code, result = predict_json(capsys, real_run, photos["trouser"], photos["bag"])
    assert code == 0
    by_file = {Path(r["file"]).stem: r["top"][0] for r in result}
    assert by_file["trouser"]["label"] == "trouser", result
    assert by_file["bag"]["label"] == "bag", result


# --------------------------------------------------------------------------- output formats


def test_text_output_lists_the_top_k_aligned(tiny_run, photos, capsys):
    assert run_cli("predict", tiny_run, photos["trouser"], photos["bag"], "--top-k", 4) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[0] == f"{photos['trouser']}:" and lines[5] == f"{photos['bag']}:"
    class_names = load_trained(tiny_run).class_names
    rows = lines[1:5] + lines[6:10]
    assert len(lines) == 10
    line = re.compile(r"^  (\d)\. (\S+(?: \S+)?) +(\d{1,3}\.\d\d)%$")
    for rows_of_file in (rows[:4], rows[4:]):
        matches = [line.match(r) for r in rows_of_file]
        assert all(matches), rows_of_file
        assert [int(m[1]) for m in matches] == [1, 2, 3, 4]
        assert all(m[2] in class_names for m in matches)
        percents = [float(m[3]) for m in matches]
        assert percents == sorted(percents, reverse=True)
    # the percentages line up in one column, across files too
    assert len({len(r) for r in rows}) == 1


def test_json_is_one_list_with_an_object_per_file(tiny_run, photos, capsys):
    code, result = predict_json(capsys, tiny_run, photos["trouser"], photos["bag"],
                                "--top-k", 3)
    assert code == 0
    assert [r["file"] for r in result] == [str(photos["trouser"]), str(photos["bag"])]
    class_names = load_trained(tiny_run).class_names
    for entry in result:
        check_top(entry, class_names, 3)


def test_top_k_of_all_classes_is_every_class(tiny_run, photos, capsys):
    code, result = predict_json(capsys, tiny_run, photos["trouser"], "--top-k", 10)
    assert code == 0
    assert sorted(item["index"] for item in result[0]["top"]) == list(range(10))
    assert sum(item["probability"] for item in result[0]["top"]) == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("problem", ["not-an-image", "empty", "too-large", "too-many-pixels"])
def test_a_bad_file_gets_an_error_and_the_others_are_predicted(problem, tiny_run, photos,
                                                               tmp_path, monkeypatch, capsys):
    bad = photos["broken"]
    if problem == "empty":
        bad = tmp_path / "empty.png"
        bad.write_bytes(b"")
    elif problem == "too-large":
        bad = tmp_path / "noise.png"  # noise does not compress: larger than the drawn trouser
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300), np.uint8)).save(bad)
        monkeypatch.setattr(images, "MAX_FILE_BYTES", photos["trouser"].stat().st_size)
    elif problem == "too-many-pixels":
        bad = tmp_path / "huge.png"  # 160,000 pixels; the drawn trouser has 60,000
        Image.new("L", (400, 400), WHITE).save(bad)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    code, result = predict_json(capsys, tiny_run, photos["trouser"], bad, photos["trouser"])
    assert code == 2
    assert [r["file"] for r in result] == [str(photos["trouser"]), str(bad), str(photos["trouser"])]
    class_names = load_trained(tiny_run).class_names
    check_top(result[0], class_names, 3)
    check_top(result[2], class_names, 3)
    assert set(result[1]) == {"file", "error"}
    assert str(bad) in result[1]["error"] and "\n" not in result[1]["error"]

    # text mode: the good files on stdout, one error line on stderr
    assert run_cli("predict", tiny_run, photos["trouser"], bad) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{photos['trouser']}:")
    assert str(bad) not in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "Traceback" not in captured.err


def test_only_bad_files_exit_2_with_an_empty_text_output(tiny_run, photos, capsys):
    assert run_cli("predict", tiny_run, photos["broken"], photos["broken"].parent / "gone.png") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 2


def test_all_good_files_go_through_one_forward_pass(tiny_run, photos, monkeypatch, capsys):
    calls = []
    original = TrainedModel.predict_proba

    def counting(self, X):
        calls.append(tuple(X.shape))
        return original(self, X)

    monkeypatch.setattr(TrainedModel, "predict_proba", counting)
    files = [photos["trouser"], photos["broken"], photos["bag"], photos["trouser"]]
    assert run_cli("predict", tiny_run, *files) == 2
    assert calls == [(3, 1, 28, 28)]


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("k", ["0", "11", "-1", "three"])
def test_top_k_outside_1_to_the_classes_is_a_usage_error(k, tiny_run, photos, capsys):
    assert run_cli("predict", tiny_run, photos["trouser"], "--top-k", k) == 2
    captured = capsys.readouterr()
    assert "--top-k" in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_predict_files_checks_top_k(tiny_run, photos):
    model = load_trained(tiny_run)
    for k in (0, 11, True, 2.0):
        with pytest.raises(ValueError, match="top_k"):
            predict_files(model, [photos["trouser"]], top_k=k)


def test_save_inputs_writes_what_the_model_saw(tiny_run, photos, tmp_path, capsys):
    twin = tmp_path / "other" / "trouser.png"  # same name as photos["trouser"], other folder
    twin.parent.mkdir()
    draw_trouser().transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(twin)
    out = tmp_path / "made" / "inputs"
    files = [photos["trouser"], photos["bag"], photos["broken"], twin]
    assert run_cli("predict", tiny_run, *files, "--save-inputs", out) == 2
    saved = sorted(p.name for p in out.iterdir())
    assert saved == ["bag.png", "trouser-2.png", "trouser.png"]
    for name, source in (("trouser.png", photos["trouser"]), ("bag.png", photos["bag"]),
                         ("trouser-2.png", twin)):
        with Image.open(out / name) as img:
            assert img.mode == "L" and img.size == (28, 28)
            np.testing.assert_array_equal(np.asarray(img), load_image(source))


def saved_input(run: Path, photo: Path, out: Path, *options: str) -> np.ndarray:
    assert run_cli("predict", run, photo, "--save-inputs", out, *options) == 0
    with Image.open(out / f"{photo.stem}.png") as img:
        return np.asarray(img)


def test_invert_and_no_trim_change_the_input(tiny_run, photos, tmp_path, capsys):
    photo = photos["trouser"]
    auto = saved_input(tiny_run, photo, tmp_path / "auto")
    never = saved_input(tiny_run, photo, tmp_path / "never", "--invert", "never")
    whole = saved_input(tiny_run, photo, tmp_path / "whole", "--no-trim")
    np.testing.assert_array_equal(auto, load_image(photo, invert="auto"))
    np.testing.assert_array_equal(never, load_image(photo, invert="never"))
    np.testing.assert_array_equal(whole, load_image(photo, trim=False))
    assert auto[0, 0] == 0 and never[0, 14] == WHITE  # not inverted, the white stays white
    assert not np.array_equal(auto, never)
    assert not np.array_equal(auto, whole)
    # untrimmed, the 200x300 canvas's margins stay: the trousers no longer fill the height
    assert auto[0].max() > 0 and auto[-1].max() > 0
    assert whole[0].max() == 0 and whole[-1].max() == 0


def test_save_inputs_into_a_file_is_an_error(tiny_run, photos, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert run_cli("predict", tiny_run, photos["trouser"], "--save-inputs", target) == 2
    captured = capsys.readouterr()
    assert "is a file, not a folder" in captured.err and "Traceback" not in captured.err


# --------------------------------------------------------------------------- bad run folders


@pytest.mark.parametrize("kind", ["missing", "empty-folder", "a-file"])
def test_a_bad_run_folder_is_one_error_line(kind, photos, tmp_path, capsys):
    run = tmp_path / "run"
    if kind == "empty-folder":
        run.mkdir()
    elif kind == "a-file":
        run.write_text("not a run")
    assert run_cli("predict", run, photos["trouser"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("softmaxlab predict: error:")
    assert str(run) in lines[0]
