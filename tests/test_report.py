"""Tests for softmaxlab.report and `softmaxlab report`: a self-contained, escaped HTML page.

The Chromium test opens the report headless: every <img> must decode (naturalWidth > 0) and a
screenshot must show a page, not a blank. It skips only where /usr/bin/chromium is missing outside
CI (CI=true makes it run, and fail if there is no browser).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import softmaxlab.data
from conftest import make_dataset
from softmaxlab import checkpoint
from softmaxlab.cli import main
from softmaxlab.report import CSP, REPORT_FILE, write_report
from softmaxlab.runner import Session, TrainConfig
from test_evaluate import CLASSES, make_run, tiny_data

CHROMIUM = "/usr/bin/chromium"
IMG_SRC = re.compile(r'<img src="([^"]*)"')


@pytest.fixture(scope="module")
def report_run(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("report") / "run", epochs=3)
    write_report(run, tiny_data()[1])
    return run


def chromium_or_skip() -> str:
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    if os.environ.get("CI") == "true":
        found = shutil.which("chromium")
        assert found, f"{CHROMIUM} is missing in CI; .ci/run installs it"
        return found
    pytest.skip(f"{CHROMIUM} is not installed (CI=true makes this test required)")


def run_chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=180, check=True)


# --------------------------------------------------------------------------- the page


def test_report_is_self_contained(report_run):
    text = (report_run / REPORT_FILE).read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and CSP in text
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//|file:)", text, re.IGNORECASE)
    assert "url(" not in text  # no CSS resources either
    sources = IMG_SRC.findall(text)
    # curves, reliability, samples, weights, mistakes (the confusion: a table)
    assert len(sources) == 5
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.verify()


def test_report_confusion_table_is_the_evaluation_confusion_matrix(report_run):
    from softmaxlab.checkpoint import load_trained
    from softmaxlab.evaluation import evaluate

    text = (report_run / REPORT_FILE).read_text(encoding="utf-8")
    body = re.search(r'<table class="confusion">.*?<tbody>(.*?)</tbody>', text, re.DOTALL).group(1)
    rows = re.findall(r"<tr><th>([^<]*)</th>(.*?)</tr>", body)
    counts = [[int(c) for c in re.findall(r'<td class="cm"[^>]*>(\d+)</td>', cells)]
              for _, cells in rows]
    assert [name for name, _ in rows] == list(CLASSES)
    assert counts == evaluate(load_trained(report_run), tiny_data()[1]).confusion.tolist()
    assert sum(map(sum, counts)) == 120
    history = json.loads((report_run / "history.json").read_text())
    correct = sum(counts[i][i] for i in range(len(CLASSES)))
    assert f"{correct / 120:.4f}" == f"{history[-1]['test_acc']:.4f}"


def test_report_shows_config_metrics_and_classes(report_run):
    text = (report_run / REPORT_FILE).read_text(encoding="utf-8")
    history = json.loads((report_run / "history.json").read_text())
    metrics_acc = f"{history[-1]['test_acc']:.4f}"  # the evaluation agrees with the history
    assert metrics_acc in text
    assert f"{history[-1]['train_loss']:.4f}" in text
    for heading in ("Configuration", "Training", "Test set: 120 images", "per-class accuracy",
                    "Calibration", "Sample predictions", "Most confident mistakes"):
        assert heading in text
    for name in CLASSES:
        assert f"<td>{name}</td>" in text
    assert "<td>batch_size</td><td>32</td>" in text
    assert "Note:" not in text


def weights_image(text: str) -> Image.Image:
    """The report's picture of the weights, decoded."""
    section = text[text.index("<h2>What the model learned</h2>"):]
    src = IMG_SRC.search(section).group(1)
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def test_report_shows_the_weights_of_each_class(report_run):
    text = (report_run / REPORT_FILE).read_text(encoding="utf-8")
    assert text.index("Sample predictions") < text.index("What the model learned") < \
        text.index("Most confident mistakes")
    assert "centred on 0" in text and "per raw pixel" not in text
    pixels = np.asarray(weights_image(text)).reshape(-1, 3).astype(int)
    red = ((pixels[:, 0] > 150) & (pixels[:, 2] < 100)).sum()
    blue = ((pixels[:, 2] > 150) & (pixels[:, 0] < 100)).sum()
    assert red > 100 and blue > 100  # a diverging map: weights of both signs are drawn


def test_report_weights_of_a_standardised_run_are_per_raw_pixel(tmp_path):
    from softmaxlab.checkpoint import load_trained
    from softmaxlab.report import pixel_weights

    train, test = tiny_data()
    session = Session(TrainConfig(epochs=1, batch_size=32, lr=0.5, standardize=True), train, test)
    run = tmp_path / "std"
    run.mkdir()
    checkpoint.write_config(run, session)
    checkpoint.save_checkpoint(run, session, session.fit())
    model = load_trained(run)
    std = model.standardizer.std.reshape(-1, 1)
    torch.testing.assert_close(pixel_weights(model), model.W / std)
    # the score of a raw image x is x @ pixel_weights + a constant per class
    X = torch.rand(5, 1, 8, 8)
    shift = model.logits(X) - X.reshape(5, -1) @ pixel_weights(model)
    torch.testing.assert_close(shift, shift[:1].expand(5, -1), atol=1e-4, rtol=0)
    text = write_report(run, test).read_text(encoding="utf-8")
    assert "per raw pixel" in text


def test_show_weights_draws_the_runs_weights(report_run, tmp_path, capsys):
    out = tmp_path / "w.png"
    assert main(["show", "--weights", str(report_run), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > im.height  # 4 classes side by side
    text = (report_run / REPORT_FILE).read_text(encoding="utf-8")
    pixels = np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3).astype(int)
    red = ((pixels[:, 0] > 150) & (pixels[:, 2] < 100)).sum()
    assert red > 100 and "What the model learned" in text


def test_show_weights_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["show", "--weights", str(tmp_path)]) == 2
    assert "softmaxlab show: error:" in capsys.readouterr().err
    assert not (tmp_path / "weights.png").exists()


def test_report_escapes_every_text(tmp_path):
    names = ("<script>alert(1)</script>", "a & b", '"quoted"', "<img src=x>")
    run = make_run(tmp_path / "<i>run & co", epochs=1, class_names=names)
    path = write_report(run, tiny_data(names)[1])
    text = path.read_text(encoding="utf-8")
    assert "<script>" not in text and "<img src=x>" not in text and "<i>run" not in text
    assert html.escape(names[0]) in text and "a &amp; b" in text
    assert "softmaxlab run &lt;i&gt;run &amp; co" in text


def test_report_of_an_mse_run_has_the_note(tmp_path):
    run = make_run(tmp_path / "mse", loss="mse", epochs=1)
    text = write_report(run, tiny_data()[1]).read_text(encoding="utf-8")
    assert "Note:" in text and "not calibrated by training" in text


def test_report_of_an_untrained_run(tmp_path):
    run = make_run(tmp_path / "zero", epochs=0)
    text = write_report(run, tiny_data()[1]).read_text(encoding="utf-8")
    assert "No epoch has been trained yet" in text


# --------------------------------------------------------------------------- command line


@pytest.fixture
def fake_data(monkeypatch):
    monkeypatch.setattr(softmaxlab.data, "load_dataset", lambda *a, **k: tiny_data())


def test_train_writes_the_report_unless_no_report(tmp_path, fake_data, capsys):
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    assert str(tmp_path / "a" / REPORT_FILE) in capsys.readouterr().out
    assert (tmp_path / "a" / REPORT_FILE).is_file()
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "b"), "--no-report"]) == 0
    assert not (tmp_path / "b" / REPORT_FILE).exists()


def test_cli_report(tmp_path, fake_data, capsys):
    run = make_run(tmp_path / "run", epochs=1)
    assert main(["report", str(run)]) == 0
    assert f"wrote {run / REPORT_FILE}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softmaxlab report: error: ") and "Traceback" not in err


def test_cli_report_on_other_data_is_an_error(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path / "run", epochs=1)
    other = make_dataset(120, 1, len(CLASSES), (4, 4), CLASSES, name="other")  # 4x4 images
    monkeypatch.setattr(softmaxlab.data, "load_dataset", lambda *a, **k: (other, other))
    assert main(["report", str(run)]) == 2
    assert "does not match the model" in capsys.readouterr().err


# --------------------------------------------------------------------------- in a browser


CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const result = [...document.images].map(i => [i.alt, i.complete, i.naturalWidth]);
  const pre = document.createElement("pre");
  pre.id = "imgcheck";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"""


def test_report_renders_in_headless_chromium(report_run, tmp_path):
    browser = chromium_or_skip()
    report = report_run / REPORT_FILE
    # 1. every image decodes: a copy with a script that lists naturalWidth (the report's CSP
    #    forbids scripts, so the copy drops that one line; the images are untouched)
    text = report.read_text(encoding="utf-8")
    check = tmp_path / "check.html"
    check.write_text(text.replace(CSP, "").replace("</body>", CHECK_SCRIPT + "</body>"),
                     encoding="utf-8")
    dom = run_chromium(browser, "--dump-dom", "--virtual-time-budget=10000",
                       check.as_uri()).stdout
    found = re.search(r'<pre id="imgcheck">(.*?)</pre>', dom, re.DOTALL)
    assert found, f"the check script did not run; chromium printed: {dom[:500]}"
    images = json.loads(html.unescape(found.group(1)))
    assert len(images) == 5  # curves, reliability, samples, weights, mistakes
    for alt, complete, width in images:
        assert complete and width > 0, f"image {alt!r} did not load"
    # 2. the report itself (CSP on, no script) draws a page: many colours, not all white
    shot = tmp_path / "shot.png"
    run_chromium(browser, f"--screenshot={shot}", "--window-size=1200,2000",
                 "--virtual-time-budget=10000", report.as_uri())
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 200
        white = sum(n for n, c in colours if min(c) >= 250)
        assert white < 0.9 * rgb.width * rgb.height
        blue = sum(n for n, (r, g, b) in colours if b > r + 60)  # the plots' blues
        assert blue > 500
