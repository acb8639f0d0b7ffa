"""Trained models out of Python: an ONNX file (onnxruntime, any language) or TorchScript (libtorch).

Both compute what :class:`softmaxlab.models.SoftmaxModel` computes, its preprocessing included,
from the raw input:

    input (N, *shape) uint8 or float  ->  to the model's float dtype  ->  / scale (255 for images)
    ->  standardised ((x - mean) / std, if the model was trained so)  ->  flattened to (N, D)
    ->  logits = x W + b  ->  outputs: label = argmax (N,) int64, probabilities = softmax (N, C)

The class names are in the file: the ONNX model's metadata ``class_names`` (a JSON list), the
TorchScript module's attribute ``class_names``. Every export checks itself before the file is
written: the exported model runs (onnxruntime, or ``torch.jit.load``) on a sample, and its labels
and probabilities are compared with the torch model's.

The ONNX graph is built with ``onnx.helper`` (opset 17, IR version 8, so older runtimes load it
too): no exporter, no tracing. ``onnx`` and ``onnxruntime`` are the optional extra ``onnx``
(``pip install 'softmaxlab[onnx]'``); without them ``to_onnx`` raises ImportError saying so.
TorchScript needs only torch (torch 2.13 deprecates ``torch.jit``, which still works: its
deprecation warnings are silenced here).
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .fsutil import atomic_path
from .models import SoftmaxModel

FORMATS = ("onnx", "torchscript")
# the file a format is written to by default (`softmaxlab export DIR`: inside DIR)
DEFAULT_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
ONNX_OPSET = 17  # Softmax and ArgMax over one axis as used here exist from opset 13 on
ONNX_IR_VERSION = 8  # the IR version of opset 17's release: runtimes from 2021 on read it
CHECK_EXAMPLES = 256  # random inputs the export is checked on, when no sample is given
INSTALL_HINT = "pip install 'softmaxlab[onnx]'"

_ONNX_TYPES = {"uint8": 2, "float32": 1, "float64": 11}  # onnx.TensorProto's element types
_TORCH_DTYPES = {"uint8": torch.uint8, "float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class InputSpec:
    """What an exported model takes: one example's ``shape`` (e.g. (28, 28) or (784,)) of
    ``dtype`` ("uint8", "float32" or "float64"), divided by ``scale`` first (255: uint8 images
    to [0, 1], as the training data was)."""

    dtype: str
    shape: tuple[int, ...]
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.dtype not in _ONNX_TYPES:
            raise ValueError(f"dtype={self.dtype!r} is not allowed; use one of "
                             f"{', '.join(_ONNX_TYPES)}")

    def describe(self) -> str:
        """E.g. ``uint8 [N, 28, 28]``."""
        return f"{self.dtype} [N, {', '.join(map(str, self.shape))}]"


def image_input(model: SoftmaxModel) -> InputSpec:
    """The input of a model trained on images (a run folder's): uint8 (H, W), read as x / 255."""
    if model.image_shape is None:
        raise ValueError("the model has no image_shape: give its InputSpec")
    return InputSpec("uint8", tuple(model.image_shape), 255.0)


@dataclass(frozen=True)
class ExportResult:
    """What was written and how it was checked.

    ``dtype``: the model's float dtype (of the computation and the probabilities);
    ``checked_with``: the runtime that ran the file ("onnxruntime 1.32.0", "torch.jit 2.13.0");
    ``examples``: the sample's size; ``max_abs_diff``: the largest difference of a probability
    from the torch model's; the labels were equal (up to exact ties).
    """

    path: Path
    format: str
    input: InputSpec
    num_classes: int
    dtype: str
    checked_with: str
    examples: int
    max_abs_diff: float


def export(model: SoftmaxModel, path: str | os.PathLike, format: str = "onnx",
           spec: InputSpec | None = None, sample: np.ndarray | None = None) -> ExportResult:
    """Write ``model`` to ``path`` as ``format`` ("onnx" or "torchscript"), checked first.

    ``spec`` (default: ``image_input(model)``) says what the file takes; ``sample`` (N, *shape)
    of its dtype is what the check runs on (default: ``CHECK_EXAMPLES`` random inputs).
    """
    if format == "onnx":
        return to_onnx(model, path, spec, sample)
    if format == "torchscript":
        return to_torchscript(model, path, spec, sample)
    raise ValueError(f"format={format!r} is not allowed; use one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- ONNX


def _import_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"exporting to ONNX needs the packages onnx and onnxruntime (missing: "
                          f"{e.name}); install them with: {INSTALL_HINT}") from e
    return onnx, onnxruntime


def onnx_model(model: SoftmaxModel, spec: InputSpec):
    """The ONNX ``ModelProto`` computing ``model`` from inputs of ``spec`` (see the module)."""
    onnx, _ = _import_onnx()
    from onnx import helper, numpy_helper

    W, b = model.W.detach().cpu(), model.b.detach().cpu()
    dtype = _dtype_name(model)
    float_type = _ONNX_TYPES[dtype]
    nodes, constants = [], []

    def constant(name: str, value: torch.Tensor) -> str:
        constants.append(numpy_helper.from_array(value.to(W.dtype).numpy(), name))
        return name

    x = "input"
    if spec.dtype != dtype:
        nodes.append(helper.make_node("Cast", [x], ["x_float"], to=float_type))
        x = "x_float"
    if spec.scale != 1.0:  # x / 255 as the training data was made (a division, not a product)
        nodes.append(helper.make_node("Div", [x, constant("scale", torch.tensor(spec.scale))],
                                      ["x_scaled"]))
        x = "x_scaled"
    if model.standardizer is not None:  # the Standardizer's x * (1 / std) + (-mean / std)
        s = model.standardizer
        nodes.append(helper.make_node("Mul", [x, constant("std_scale", 1.0 / s.std)],
                                      ["x_times"]))
        nodes.append(helper.make_node("Add", ["x_times", constant("std_shift", -s.mean / s.std)],
                                      ["x_standardised"]))
        x = "x_standardised"
    if len(spec.shape) != 1:
        nodes.append(helper.make_node("Flatten", [x], ["x_flat"], axis=1))
        x = "x_flat"
    nodes += [
        helper.make_node("MatMul", [x, constant("W", W)], ["scores"]),
        helper.make_node("Add", ["scores", constant("b", b)], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    C = W.shape[1]
    graph = helper.make_graph(
        nodes, "softmax_regression",
        [helper.make_tensor_value_info("input", _ONNX_TYPES[spec.dtype], ["N", *spec.shape])],
        [helper.make_tensor_value_info("label", onnx.TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", float_type, ["N", C])],
        constants,
    )
    proto = helper.make_model(graph, producer_name="softmaxlab", producer_version=_version(),
                              opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              doc_string=_description(model, spec))
    proto.ir_version = ONNX_IR_VERSION
    helper.set_model_props(proto, {"class_names": json.dumps(list(model.class_names)),
                                   "input": spec.describe(), "input_scale": f"{spec.scale:g}"})
    onnx.checker.check_model(proto)
    return proto


def to_onnx(model: SoftmaxModel, path: str | os.PathLike, spec: InputSpec | None = None,
            sample: np.ndarray | None = None) -> ExportResult:
    """Write ``model`` as an ONNX file, after onnxruntime ran it on ``sample`` and gave the torch
    model's predictions (else RuntimeError, and no file). Needs ``softmaxlab[onnx]``."""
    _, onnxruntime = _import_onnx()
    spec = spec or image_input(model)
    data = onnx_model(model, spec).SerializeToString()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # a small sample: no thread pool to spin up
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    x = _sample(spec, sample)
    label, probs = session.run(["label", "probabilities"], {"input": x})
    diff = _compare(model, spec, x, label, probs, "onnxruntime")
    _write(path, data)
    return ExportResult(Path(path), "onnx", spec, model.W.shape[1], _dtype_name(model),
                        f"onnxruntime {onnxruntime.__version__}", len(x), diff)


# --------------------------------------------------------------------------- TorchScript


class _Exported(torch.nn.Module):
    """The model with its preprocessing, as one module: x -> (label (N,), probabilities (N, C)).

    (TorchScript infers the attributes' types from their values: ``class_names`` is a List[str].)
    """

    def __init__(self, model: SoftmaxModel, spec: InputSpec) -> None:
        super().__init__()
        W = model.W.detach().cpu()
        self.register_buffer("W", W.clone())
        self.register_buffer("b", model.b.detach().cpu().clone())
        s = model.standardizer
        self.standardize = s is not None
        self.register_buffer("std_scale", (1.0 / s.std).to(W.dtype) if s else torch.ones(1))
        self.register_buffer("std_shift", (-s.mean / s.std).to(W.dtype) if s else torch.zeros(1))
        self.scale = float(spec.scale)
        self.class_names = list(model.class_names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.W.dtype)
        if self.scale != 1.0:
            x = x / self.scale
        if self.standardize:
            x = torch.addcmul(self.std_shift, x, self.std_scale)
        probs = torch.softmax(torch.addmm(self.b, x.reshape(x.shape[0], -1), self.W), dim=1)
        return probs.argmax(dim=1), probs


def to_torchscript(model: SoftmaxModel, path: str | os.PathLike, spec: InputSpec | None = None,
                   sample: np.ndarray | None = None) -> ExportResult:
    """Write ``model`` as a TorchScript file (``torch.jit.load(path)(x)`` -> (label,
    probabilities)), after the loaded file gave the torch model's predictions on ``sample``."""
    spec = spec or image_input(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit", category=DeprecationWarning)
        scripted = torch.jit.script(_Exported(model, spec))
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        data = buffer.getvalue()
        loaded = torch.jit.load(io.BytesIO(data))
    x = _sample(spec, sample)
    with torch.no_grad():
        label, probs = loaded(torch.from_numpy(x))
    diff = _compare(model, spec, x, label.numpy(), probs.numpy(), "torch.jit")
    _write(path, data)
    return ExportResult(Path(path), "torchscript", spec, model.W.shape[1], _dtype_name(model),
                        f"torch.jit {torch.__version__}", len(x), diff)


# --------------------------------------------------------------------------- the check


def reference(model: SoftmaxModel, spec: InputSpec, x: np.ndarray) -> np.ndarray:
    """The torch model's probabilities (N, C) for inputs ``x`` (N, *shape) of ``spec``: what
    every softmaxlab path computes (images: ``x / 255`` as ``ImageDataset.to_float``)."""
    X = torch.from_numpy(np.ascontiguousarray(x))
    if spec.scale != 1.0:
        X = torch.div(X, spec.scale)
    return model.predict_proba(X).numpy()


def _sample(spec: InputSpec, sample: np.ndarray | None) -> np.ndarray:
    """The check's inputs: ``sample`` as (N, *shape) of the spec's dtype, or random ones (uint8:
    every value 0-255 with all-black and all-white examples; floats: standard normal)."""
    if sample is not None:
        x = np.ascontiguousarray(sample, dtype=spec.dtype)
        if len(spec.shape) > 1 and x.ndim == 2 and x.shape[1] == np.prod(spec.shape):
            x = x.reshape(len(x), *spec.shape)  # flattened images
        if x.shape[1:] != spec.shape or len(x) == 0:
            raise ValueError(f"the sample has shape {x.shape}; the model takes "
                             f"{spec.describe()} with N >= 1")
        return x
    rng = np.random.default_rng(0)
    shape = (CHECK_EXAMPLES, *spec.shape)
    if spec.dtype == "uint8":
        x = rng.integers(0, 256, size=shape, dtype=np.uint8)
        x[0], x[1] = 0, 255
        return x
    return rng.standard_normal(shape).astype(spec.dtype)


def _compare(model: SoftmaxModel, spec: InputSpec, x: np.ndarray, label: np.ndarray,
             probs: np.ndarray, runtime: str) -> float:
    """The largest probability difference from the torch model's; RuntimeError when labels or
    probabilities differ by more than the two computations' rounding."""
    expected = reference(model, spec, x)
    eps = float(np.finfo(expected.dtype).eps)
    diff = float(np.abs(probs - expected).max())
    top2 = np.sort(expected, axis=1)[:, -2:]
    tie = top2[:, 1] - top2[:, 0] <= 1e3 * eps  # equal up to rounding: either label is right
    wrong = int(((label != expected.argmax(1)) & ~tie).sum())
    if wrong or diff > 1e3 * eps or probs.shape != expected.shape:
        raise RuntimeError(
            f"the exported model does not compute what the torch model does: on {len(x)} "
            f"inputs {runtime} gives {wrong} other labels and probabilities up to {diff:.3g} "
            "apart. This is a bug in softmaxlab's export; please report it.")
    return diff


def _version() -> str:
    """softmaxlab's installed version ("" when running from a source tree not installed). (Not
    ``softmaxlab.__version__``: importing the package from here closes an import circle through
    the estimator, which imports this module.)"""
    try:
        return importlib.metadata.version("softmaxlab")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _dtype_name(model: SoftmaxModel) -> str:
    names = {torch.float32: "float32", torch.float64: "float64"}
    if model.W.dtype not in names:
        raise ValueError(f"the model's weights are {model.W.dtype}; export takes float32 or "
                         "float64 models")
    return names[model.W.dtype]


def _write(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def _description(model: SoftmaxModel, spec: InputSpec) -> str:
    steps = [f"input {spec.describe()}"]
    if spec.scale != 1.0:
        steps.append(f"/ {spec.scale:g}")
    if model.standardizer is not None:
        steps.append("standardised per feature")
    steps.append(f"softmax regression over {model.W.shape[1]} classes")
    return ("softmaxlab: " + " -> ".join(steps) + "; outputs label (N,) int64 = argmax, "
            "probabilities (N, C); class names in the metadata (class_names, JSON)")
