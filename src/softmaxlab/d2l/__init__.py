"""The names *Dive into Deep Learning*'s linear-network chapters take from ``d2l``, both editions.

Change the book's import line ``from d2l import torch as d2l`` to ``from softmaxlab import d2l``
and the PyTorch code of these sections runs as written, in a script or in Jupyter:

- d2l-zh 2.0 (d2l 0.17), chapter 3 "线性神经网络": ``load_data_fashion_mnist``, ``train_ch3``,
  ``predict_ch3``, ``Animator``, ``Accumulator``, ``sgd``, ... (``ch3``);
- d2l-en 1.x, chapters 3 and 4 (linear regression and classification): ``add_to_class``,
  ``HyperParameters``, ``ProgressBoard``, ``Module``, ``DataModule``, ``Trainer``,
  ``SyntheticRegressionData``, ``FashionMNIST``, ``Classifier``, ``SoftmaxRegression``, ... (``oo``);
- both editions' tensor aliases: ``d2l.tensor``, ``d2l.reduce_sum``, ``d2l.argmax``, ... (``aliases``);
- the figures, inline in Jupyter and PNG files from a script (``figures``), and ``show_weights``,
  the picture of what a softmax regression learned.

Where the editions differ, d2l-zh's definition is kept (``try_all_gpus`` returns ``[cpu()]``
without a GPU; ``plot``'s ``legend`` defaults to None): the d2l-en code of these chapters behaves
the same with it. Data comes from memory on softmaxlab's fast path (``softmaxlab.d2l.data``),
in the order the book's ``DataLoader`` would give under the same ``torch.manual_seed``.
A name of another chapter raises an AttributeError that says so. docs/book.md has the details.

This package keeps the book's prints and asserts (``train_ch3`` ends by asserting the chapter's
numbers); the rest of softmaxlab returns values instead.
"""

from __future__ import annotations

from .aliases import (
    abs,
    arange,
    argmax,
    astype,
    batch_matmul,
    concat,
    cos,
    cosh,
    exp,
    expand_dims,
    eye,
    float32,
    int32,
    int64,
    linspace,
    log,
    matmul,
    meshgrid,
    nn_Module,
    normal,
    numpy,
    ones,
    ones_like,
    rand,
    randn,
    reduce_mean,
    reduce_sum,
    repeat,
    reshape,
    sigmoid,
    sin,
    sinh,
    size,
    stack,
    swapaxes,
    tanh,
    tensor,
    to,
    transpose,
    zeros,
    zeros_like,
)
from .base import HyperParameters, add_to_class
from .ch3 import (
    Accumulator,
    Timer,
    accuracy,
    cross_entropy,
    evaluate_accuracy,
    linreg,
    predict_ch3,
    sgd,
    softmax,
    squared_loss,
    train_ch3,
    train_epoch_ch3,
)
from .data import (
    get_dataloader_workers,
    get_fashion_mnist_labels,
    load_array,
    load_data_fashion_mnist,
    synthetic_data,
)
from .devices import cpu, gpu, num_gpus, try_all_gpus, try_gpu
from .figures import (
    Animator,
    ProgressBoard,
    plot,
    plt,
    set_axes,
    set_figsize,
    show_images,
    show_weights,
    use_svg_display,
)
from .oo import (
    SGD,
    Classifier,
    DataModule,
    FashionMNIST,
    LinearRegression,
    LinearRegressionScratch,
    Module,
    SoftmaxRegression,
    SyntheticRegressionData,
    Trainer,
)

__all__ = [
    "SGD",
    "Accumulator",
    "Animator",
    "Classifier",
    "DataModule",
    "FashionMNIST",
    "HyperParameters",
    "LinearRegression",
    "LinearRegressionScratch",
    "Module",
    "ProgressBoard",
    "SoftmaxRegression",
    "SyntheticRegressionData",
    "Timer",
    "Trainer",
    "abs",
    "accuracy",
    "add_to_class",
    "arange",
    "argmax",
    "astype",
    "batch_matmul",
    "concat",
    "cos",
    "cosh",
    "cpu",
    "cross_entropy",
    "evaluate_accuracy",
    "exp",
    "expand_dims",
    "eye",
    "float32",
    "get_dataloader_workers",
    "get_fashion_mnist_labels",
    "gpu",
    "int32",
    "int64",
    "linreg",
    "linspace",
    "load_array",
    "load_data_fashion_mnist",
    "log",
    "matmul",
    "meshgrid",
    "nn_Module",
    "normal",
    "num_gpus",
    "numpy",
    "ones",
    "ones_like",
    "plot",
    "plt",
    "predict_ch3",
    "rand",
    "randn",
    "reduce_mean",
    "reduce_sum",
    "repeat",
    "reshape",
    "set_axes",
    "set_figsize",
    "sgd",
    "show_images",
    "show_weights",
    "sigmoid",
    "sin",
    "sinh",
    "size",
    "softmax",
    "squared_loss",
    "stack",
    "swapaxes",
    "synthetic_data",
    "tanh",
    "tensor",
    "to",
    "train_ch3",
    "train_epoch_ch3",
    "transpose",
    "try_all_gpus",
    "try_gpu",
    "use_svg_display",
    "zeros",
    "zeros_like",
]

COVERED = ("d2l-zh 2.0 chapter 3 (linear networks: linear and softmax regression, the "
           "Fashion-MNIST dataset) and d2l-en 1.x chapters 3 and 4 (linear regression, linear "
           "classification)")


def __getattr__(name: str):
    """A name this package lacks: say which chapters it covers."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(
        f"softmaxlab.d2l has no {name!r}: it covers {COVERED}. d2l.{name} belongs to another "
        "part of the book; for that, use the book's own package (pip install d2l) and its "
        "import line (docs/book.md)")
