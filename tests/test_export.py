"""Models out of Python: ONNX files that onnxruntime runs, and TorchScript, from run folders
(`softmaxlab export`) and from fitted estimators (`SoftmaxRegression.to_onnx`)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split

from conftest import accept_files, make_idx_files
from softmaxlab import export as ex
from softmaxlab import runfolder
from softmaxlab.checkpoint import load_trained
from softmaxlab.cli import main
from softmaxlab.data import load_dataset
from softmaxlab.estimator import SoftmaxRegression

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_cli(*argv) -> int:
    """``softmaxlab ARGV``'s exit code, also when argparse exits (usage errors)."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:
        return int(e.code)


def run_onnx(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, probabilities) of the ONNX file for inputs ``x``, by onnxruntime."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, probs = session.run(["label", "probabilities"], {"input": x})
    return label, probs


def load_torchscript(path: Path):
    with warnings.catch_warnings():  # torch.jit is deprecated in torch 2.13 (and works)
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path))


def train_run(out: Path, data_dir: Path, *options) -> Path:
    assert run_cli("train", "--threads", 1, "--data-dir", data_dir, "--out", out, "--no-report",
                   *options) == 0
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(run folder trained with --standardize on conftest's tiny IDX data, its test split)."""
    root = tmp_path_factory.mktemp("tiny-export")
    data = make_idx_files(root / "tiny")
    with pytest.MonkeyPatch.context() as mp:
        accept_files(mp, data)
        run = train_run(root / "run", data, "--epochs", 2, "--batch-size", 16, "--standardize")
        _, test = load_dataset(data_dir=data)
    return run, test


@pytest.fixture(scope="module")
def fashion(real_data_dir):
    return load_dataset(data_dir=real_data_dir)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, real_data_dir):
    """A run folder of `--recipe fast` on the real Fashion-MNIST (skipped without it)."""
    return train_run(tmp_path_factory.mktemp("real-export") / "run", real_data_dir,
                     "--recipe", "fast")


def assert_same_predictions(label, probs, model, X, atol=1e-5) -> None:
    """The runtime's (label, probs) against the torch model's on float images X."""
    expected = model.predict_proba(X).numpy()
    np.testing.assert_array_equal(label, expected.argmax(1))
    np.testing.assert_allclose(probs, expected, atol=atol)


# ---------------------------------------------------------------- run folders


def test_run_folder_to_onnx_on_the_test_set(tiny, capsys):
    run, test = tiny
    assert run_cli("export", run) == 0
    out = capsys.readouterr().out
    assert f"wrote {run / 'model.onnx'} (onnx): input uint8 [N, 28, 28]" in out
    assert "checked: onnxruntime" in out and "on 256 random images" in out
    label, probs = run_onnx(run / "model.onnx", test.images.numpy())  # the raw uint8 images
    model = load_trained(run)
    assert model.standardizer is not None  # the standardisation is inside the graph
    assert_same_predictions(label, probs, model, test.to_float())


def test_real_run_folder_to_onnx_on_the_test_set(real_run, fashion, tmp_path):
    _, test = fashion
    out = tmp_path / "elsewhere" / "fashion.onnx"
    assert run_cli("export", real_run, "--out", out) == 0
    label, probs = run_onnx(out, test.images.numpy())
    model = load_trained(real_run)
    assert_same_predictions(label, probs, model, test.to_float())
    history = json.loads((real_run / "history.json").read_text())
    assert (label == test.labels.numpy()).mean() == pytest.approx(history[-1]["test_acc"])
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert json.loads(meta["class_names"]) == list(test.class_names)


@pytest.mark.parametrize("which", ["tiny", "real"])
def test_run_folder_to_torchscript_on_the_test_set(which, request, capsys):
    if which == "tiny":
        run, test = request.getfixturevalue("tiny")
    else:
        run, test = request.getfixturevalue("real_run"), request.getfixturevalue("fashion")[1]
    assert run_cli("export", run, "--format", "torchscript") == 0
    assert "checked: torch.jit" in capsys.readouterr().out
    module = load_torchscript(run / "model.pt")
    assert list(module.class_names) == list(test.class_names)
    with torch.no_grad():
        label, probs = module(test.images)
    assert_same_predictions(label.numpy(), probs.numpy(), load_trained(run), test.to_float())


def test_onnx_graph_holds_the_preprocessing_and_describes_itself(tiny):
    run, test = tiny
    result = ex.to_onnx(load_trained(run), run / "graph.onnx")
    proto = onnx.load(run / "graph.onnx")
    onnx.checker.check_model(proto)
    assert proto.ir_version == ex.ONNX_IR_VERSION
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", ex.ONNX_OPSET)]
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Cast", "Div", "Mul", "Add", "Flatten", "MatMul", "Add", "Softmax", "ArgMax"]
    (inp,) = proto.graph.input
    assert inp.name == "input"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["N", 28, 28]
    outputs = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    assert outputs == {"label": onnx.TensorProto.INT64, "probabilities": onnx.TensorProto.FLOAT}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == list(test.class_names)
    assert meta["input"] == "uint8 [N, 28, 28]" and meta["input_scale"] == "255"
    assert result.input == ex.InputSpec("uint8", (28, 28), 255.0)
    assert (result.checked_with, result.examples) == (
        f"onnxruntime {onnxruntime.__version__}", ex.CHECK_EXAMPLES)
    assert result.max_abs_diff < 1e-4 and result.num_classes == 10 and result.dtype == "float32"


def test_a_run_without_standardisation_has_no_standardising_nodes(tmp_path):
    data = make_idx_files(tmp_path / "tiny")
    with pytest.MonkeyPatch.context() as mp:
        accept_files(mp, data)
        run = train_run(tmp_path / "run", data, "--epochs", 1, "--batch-size", 16)
        _, test = load_dataset(data_dir=data)
    ex.to_onnx(load_trained(run), tmp_path / "m.onnx")
    ops = [n.op_type for n in onnx.load(tmp_path / "m.onnx").graph.node]
    assert "Mul" not in ops and ops[:2] == ["Cast", "Div"]
    label, probs = run_onnx(tmp_path / "m.onnx", test.images.numpy())
    assert_same_predictions(label, probs, load_trained(run), test.to_float())


# ---------------------------------------------------------------- estimators


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_estimator_to_onnx_on_fashion_mnist_uint8(fashion, tmp_path):
    train, test = fashion
    X_tr = train.images.reshape(len(train), -1).numpy()
    X_te = test.images.reshape(len(test), -1).numpy()
    clf = SoftmaxRegression(random_state=0).fit(X_tr, train.labels.numpy())
    result = clf.to_onnx(tmp_path / "clf.onnx", sample=X_te[:100])
    assert result.input == ex.InputSpec("uint8", (784,)) and result.examples == 100
    label, probs = run_onnx(tmp_path / "clf.onnx", X_te)
    np.testing.assert_array_equal(clf.classes_[label], clf.predict(X_te))
    np.testing.assert_allclose(probs, clf.predict_proba(X_te), atol=1e-5)


def test_estimator_to_onnx_on_fashion_mnist_floats(fashion, tmp_path):
    train, test = fashion
    X_tr = train.images.reshape(len(train), -1).numpy() / 255.0  # float64
    X_te = test.images.reshape(len(test), -1).numpy() / 255.0
    clf = SoftmaxRegression(random_state=0).fit(X_tr, train.labels.numpy())
    assert clf.coef_.dtype == np.float32  # sgd computes in float32 ...
    clf.to_onnx(tmp_path / "clf.onnx")
    proto = onnx.load(tmp_path / "clf.onnx")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE  # ... of
    assert proto.graph.node[0].op_type == "Cast"  # float64 input, as it was trained on
    label, probs = run_onnx(tmp_path / "clf.onnx", X_te)
    np.testing.assert_array_equal(label, clf.predict(X_te))
    np.testing.assert_allclose(probs, clf.predict_proba(X_te), atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_estimator_to_onnx_in_its_precision(digits, tmp_path, dtype):
    X_tr, X_te, y_tr, _ = digits
    clf = SoftmaxRegression(max_iter=500).fit(X_tr.astype(dtype), y_tr)
    clf.to_onnx(tmp_path / "digits.onnx")
    label, probs = run_onnx(tmp_path / "digits.onnx", X_te.astype(dtype))
    assert probs.dtype == dtype
    np.testing.assert_array_equal(clf.classes_[label], clf.predict(X_te.astype(dtype)))
    atol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(probs, clf.predict_proba(X_te.astype(dtype)), atol=atol)


def test_binary_estimator_with_string_labels_to_onnx(digits, tmp_path):
    X_tr, X_te, y_tr, _ = digits
    two = np.isin(y_tr, (3, 8))
    names = np.where(y_tr[two] == 3, "three", "eight")
    clf = SoftmaxRegression(max_iter=500).fit(X_tr[two], names)
    clf.to_onnx(tmp_path / "binary.onnx")
    meta = {p.key: p.value for p in onnx.load(tmp_path / "binary.onnx").metadata_props}
    assert json.loads(meta["class_names"]) == ["eight", "three"] == clf.classes_.tolist()
    label, probs = run_onnx(tmp_path / "binary.onnx", X_te)
    assert probs.shape == (len(X_te), 2)
    np.testing.assert_array_equal(clf.classes_[label], clf.predict(X_te))
    np.testing.assert_allclose(probs, clf.predict_proba(X_te), atol=1e-12)


def test_estimator_to_onnx_needs_a_fitted_model_and_a_fitting_sample(digits, tmp_path):
    X_tr, X_te, y_tr, _ = digits
    with pytest.raises(NotFittedError):
        SoftmaxRegression().to_onnx(tmp_path / "x.onnx")
    clf = SoftmaxRegression(max_iter=500).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="X has 10 features"):
        clf.to_onnx(tmp_path / "x.onnx", sample=X_te[:, :10])
    assert not (tmp_path / "x.onnx").exists()


# ---------------------------------------------------------------- the check


@pytest.mark.parametrize("fmt", ex.FORMATS)
def test_an_export_that_disagrees_with_torch_is_a_bug_and_writes_nothing(tiny, tmp_path,
                                                                         monkeypatch, fmt):
    run, _ = tiny
    real = ex.reference
    monkeypatch.setattr(ex, "reference", lambda *a: np.roll(real(*a), 1, axis=1))
    path = tmp_path / "bad.model"
    with pytest.raises(RuntimeError, match="does not compute what the torch model does"):
        ex.export(load_trained(run), path, fmt)
    assert not path.exists()


def test_the_check_runs_on_the_given_sample(tiny, tmp_path):
    run, test = tiny
    model = load_trained(run)
    result = ex.to_onnx(model, tmp_path / "m.onnx", sample=test.images[:7].numpy())
    assert result.examples == 7
    flat = test.images[:5].reshape(5, -1).numpy()  # flattened images are reshaped
    assert ex.to_torchscript(model, tmp_path / "m.pt", sample=flat).examples == 5
    with pytest.raises(ValueError, match=r"the sample has shape \(3, 27\)"):
        ex.to_onnx(model, tmp_path / "m.onnx", sample=np.zeros((3, 27), np.uint8))


# ---------------------------------------------------------------- the command


def test_without_onnx_the_command_says_what_to_install(tiny, tmp_path, monkeypatch, capsys):
    run, _ = tiny
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    out = tmp_path / "m.onnx"
    with pytest.raises(ImportError, match=r"pip install 'softmaxlab\[onnx\]'"):
        ex.to_onnx(load_trained(run), out)
    assert run_cli("export", run, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("softmaxlab export: error: --format onnx cannot")
    assert "onnxruntime" in err[0] and "--format torchscript" in err[0]
    assert not out.exists()
    assert run_cli("export", run, "--format", "torchscript", "--out", tmp_path / "m.pt") == 0


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", runfolder.LOCK_FILE])
def test_the_command_never_replaces_the_runs_own_files(tiny, name, capsys):
    run, _ = tiny
    before = (run / name).read_bytes()
    assert run_cli("export", run, "--out", run / name) == 2
    assert f"would replace the run's own {name}" in capsys.readouterr().err
    assert (run / name).read_bytes() == before


def test_bad_paths_are_one_line_errors(tiny, tmp_path, capsys):
    run, _ = tiny
    assert run_cli("export", tmp_path / "missing") == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "a-folder").mkdir()
    assert run_cli("export", run, "--out", tmp_path / "a-folder") == 2
    assert "is a folder; give the file to write" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("export", empty) == 2
    assert "config.json is missing" in capsys.readouterr().err


def test_export_into_a_run_folder_in_use_is_refused(tiny, tmp_path, capsys):
    run, _ = tiny
    with runfolder.lock(run):
        assert run_cli("export", run, "--out", run / "busy.onnx") == 2
        assert "is in use by process" in capsys.readouterr().err
        # elsewhere it only reads the run's (atomically written) checkpoint
        assert run_cli("export", run, "--out", tmp_path / "free.onnx") == 0
    assert not (run / "busy.onnx").exists()


def test_help_shows_the_defaults(capsys):
    assert run_cli("export", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: onnx)" in text
    assert f"(default: DIR/{ex.DEFAULT_FILES['onnx']}, or DIR/{ex.DEFAULT_FILES['torchscript']}" \
           in text
