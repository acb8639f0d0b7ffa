"""softmaxlab.d2l has the names both editions' linear-network chapters take from d2l.

The lists below are the names of d2l 0.17 (d2l-zh 2.0, chapter 3) and d2l 1.x (d2l-en, chapters 3
and 4) that these sections use, and both packages' whole blocks of tensor aliases; docs/book.md
says how they were counted from the book's ``d2l/torch.py``.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from softmaxlab import d2l

# d2l 0.17's names of chapter 3 (and the plotting, timing and device helpers it calls)
ZH_CHAPTER_3 = [
    "Accumulator", "Animator", "Timer", "accuracy", "evaluate_accuracy", "get_dataloader_workers",
    "get_fashion_mnist_labels", "linreg", "load_array", "load_data_fashion_mnist", "plot", "plt",
    "predict_ch3", "set_axes", "set_figsize", "sgd", "show_images", "squared_loss",
    "synthetic_data", "train_ch3", "train_epoch_ch3", "try_all_gpus", "try_gpu",
    "use_svg_display",
]
# d2l 1.x's names of chapters 3 and 4 (and the helpers they call)
EN_CHAPTERS_3_4 = [
    "Classifier", "DataModule", "FashionMNIST", "HyperParameters", "LinearRegression",
    "LinearRegressionScratch", "Module", "ProgressBoard", "SGD", "SoftmaxRegression",
    "SyntheticRegressionData", "Timer", "Trainer", "add_to_class", "cpu", "gpu", "num_gpus",
    "plot", "set_axes", "set_figsize", "show_images", "try_all_gpus", "try_gpu",
    "use_svg_display",
]
# the alias block at the end of d2l 0.17's torch.py
ZH_ALIASES = [
    "ones", "zeros", "tensor", "arange", "meshgrid", "sin", "sinh", "cos", "cosh", "tanh",
    "linspace", "exp", "log", "normal", "rand", "matmul", "int32", "float32", "concat", "stack",
    "abs", "eye", "numpy", "size", "reshape", "to", "reduce_sum", "argmax", "astype", "transpose",
]
# the alias block at the end of d2l 1.x's torch.py
EN_ALIASES = [
    "nn_Module", "ones_like", "ones", "zeros_like", "zeros", "tensor", "arange", "meshgrid", "sin",
    "sinh", "cos", "cosh", "tanh", "linspace", "exp", "log", "normal", "rand", "randn", "matmul",
    "int32", "int64", "float32", "concat", "stack", "abs", "eye", "sigmoid", "batch_matmul",
    "numpy", "size", "reshape", "to", "reduce_sum", "argmax", "astype", "transpose",
    "reduce_mean", "expand_dims", "swapaxes", "repeat",
]

# the book's signatures (classes: their constructor) of the names added for d2l-en 1.x and the
# rest of chapter 3 (test_d2l.py has those of the chapter's training code)
SIGNATURES = {
    "add_to_class": "(Class)",
    "HyperParameters.save_hyperparameters": "(self, ignore=[])",
    "ProgressBoard": "(xlabel=None, ylabel=None, xlim=None, ylim=None, xscale='linear', "
                     "yscale='linear', ls=['-', '--', '-.', ':'], colors=['C0', 'C1', 'C2', "
                     "'C3'], fig=None, axes=None, figsize=(3.5, 2.5), display=True)",
    "ProgressBoard.draw": "(self, x, y, label, every_n=1)",
    "Module": "(plot_train_per_epoch=2, plot_valid_per_epoch=1)",
    "Module.loss": "(self, y_hat, y)",
    "Module.forward": "(self, X)",
    "Module.plot": "(self, key, value, train)",
    "Module.training_step": "(self, batch)",
    "Module.validation_step": "(self, batch)",
    "Module.configure_optimizers": "(self)",
    "Module.apply_init": "(self, inputs, init=None)",
    "DataModule": "(root='../data', num_workers=4)",
    "DataModule.get_dataloader": "(self, train)",
    "DataModule.train_dataloader": "(self)",
    "DataModule.val_dataloader": "(self)",
    "DataModule.get_tensorloader": "(self, tensors, train, indices=slice(0, None, None))",
    "Trainer": "(max_epochs, num_gpus=0, gradient_clip_val=0)",
    "Trainer.prepare_data": "(self, data)",
    "Trainer.prepare_model": "(self, model)",
    "Trainer.fit": "(self, model, data)",
    "Trainer.fit_epoch": "(self)",
    "Trainer.prepare_batch": "(self, batch)",
    "Trainer.clip_gradients": "(self, grad_clip_val, model)",
    "SGD": "(params, lr)",
    "SGD.step": "(self)",
    "SGD.zero_grad": "(self)",
    "SyntheticRegressionData": "(w, b, noise=0.01, num_train=1000, num_val=1000, batch_size=32)",
    "SyntheticRegressionData.get_dataloader": "(self, train)",
    "LinearRegressionScratch": "(num_inputs, lr, sigma=0.01)",
    "LinearRegression": "(lr)",
    "LinearRegression.get_w_b": "(self)",
    "FashionMNIST": "(batch_size=64, resize=(28, 28))",
    "FashionMNIST.text_labels": "(self, indices)",
    "FashionMNIST.get_dataloader": "(self, train)",
    "FashionMNIST.visualize": "(self, batch, nrows=1, ncols=8, labels=[])",
    "Classifier.validation_step": "(self, batch)",
    "Classifier.accuracy": "(self, Y_hat, Y, averaged=True)",
    "Classifier.loss": "(self, Y_hat, Y, averaged=True)",
    "Classifier.layer_summary": "(self, X_shape)",
    "SoftmaxRegression": "(num_outputs, lr)",
    "cpu": "()",
    "gpu": "(i=0)",
    "num_gpus": "()",
    "try_gpu": "(i=0)",
    "try_all_gpus": "()",
    "plot": "(X, Y=None, xlabel=None, ylabel=None, legend=None, xlim=None, ylim=None, "
            "xscale='linear', yscale='linear', fmts=('-', 'm--', 'g-.', 'r:'), "
            "figsize=(3.5, 2.5), axes=None)",
    "synthetic_data": "(w, b, num_examples)",
    "linreg": "(X, w, b)",
    "squared_loss": "(y_hat, y)",
    "load_array": "(data_arrays, batch_size, is_train=True)",
}


def signature(obj) -> str:
    """``inspect.signature`` without annotations, e.g. ``(a, b=1)``."""
    parts = []
    for p in inspect.signature(obj).parameters.values():
        name = "*" + p.name if p.kind is p.VAR_POSITIONAL else p.name
        parts.append(name if p.default is p.empty else f"{name}={p.default!r}")
    return "(" + ", ".join(parts) + ")"


def lookup(dotted: str):
    obj = d2l
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", sorted(set(ZH_CHAPTER_3 + EN_CHAPTERS_3_4 + ZH_ALIASES
                                            + EN_ALIASES)))
def test_every_name_of_both_editions_is_there(name):
    assert name in d2l.__all__
    assert getattr(d2l, name) is not None


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_the_books_signatures(name):
    assert signature(lookup(name)) == SIGNATURES[name]


def test_the_aliases_are_torchs_functions_and_dtypes():
    for name, target in [("ones", torch.ones), ("zeros", torch.zeros), ("tensor", torch.tensor),
                         ("arange", torch.arange), ("exp", torch.exp), ("log", torch.log),
                         ("normal", torch.normal), ("rand", torch.rand), ("randn", torch.randn),
                         ("matmul", torch.matmul), ("concat", torch.cat), ("stack", torch.stack),
                         ("abs", torch.abs), ("eye", torch.eye), ("sigmoid", torch.sigmoid),
                         ("batch_matmul", torch.bmm), ("ones_like", torch.ones_like),
                         ("zeros_like", torch.zeros_like), ("meshgrid", torch.meshgrid),
                         ("linspace", torch.linspace), ("sin", torch.sin), ("tanh", torch.tanh),
                         ("int32", torch.int32), ("int64", torch.int64),
                         ("float32", torch.float32), ("nn_Module", nn.Module)]:
        assert getattr(d2l, name) is target, name


def test_the_method_aliases_call_the_tensors_methods():
    X = torch.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]], requires_grad=True)
    assert isinstance(d2l.numpy(X), np.ndarray) and d2l.numpy(X).tolist() == X.tolist()
    assert d2l.size(X) == 6
    assert d2l.reshape(X, (3, 2)).shape == (3, 2) and d2l.reshape(X, -1).shape == (6,)
    assert d2l.to(X, torch.float64).dtype == torch.float64
    # both editions' spellings of keepdim
    assert d2l.reduce_sum(X, 1, keepdim=True).tolist() == [[9.0], [12.0]]
    assert d2l.reduce_sum(X, 0, keepdims=True).tolist() == [[5.0, 7.0, 9.0]]
    assert d2l.reduce_sum(X).item() == 21.0 and d2l.reduce_mean(X).item() == 3.5
    assert d2l.argmax(X, axis=1).tolist() == [1, 2]
    assert d2l.astype(X > 2, torch.float32).tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    assert d2l.transpose(X).shape == (3, 2)
    assert d2l.expand_dims(X, 0).shape == (1, 2, 3)
    assert d2l.swapaxes(X, 0, 1).shape == (3, 2)
    assert d2l.repeat(X, 2, 1).shape == (4, 3)


def test_a_name_of_another_chapter_says_what_is_covered():
    with pytest.raises(AttributeError) as info:
        d2l.train_ch6  # noqa: B018
    message = str(info.value)
    assert "'train_ch6'" in message and "d2l-zh 2.0 chapter 3" in message
    assert "d2l-en 1.x chapters 3 and 4" in message and "pip install d2l" in message
    assert not hasattr(d2l, "Vocab") and not hasattr(d2l, "DATA_HUB")
    with pytest.raises(ImportError):
        from softmaxlab.d2l import RNNScratch  # noqa: F401


def test_where_the_editions_differ_d2l_zh_wins(monkeypatch):
    # try_all_gpus: [cpu()] without a GPU (d2l-en 1.x would return [])
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert d2l.try_all_gpus() == [torch.device("cpu")]
    assert d2l.try_gpu() == torch.device("cpu") and d2l.try_gpu(3) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert d2l.try_all_gpus() == [torch.device("cuda:0"), torch.device("cuda:1")]
    assert d2l.try_gpu(1) == torch.device("cuda:1") and d2l.num_gpus() == 2
    assert d2l.gpu(1) == torch.device("cuda:1") and d2l.cpu() == torch.device("cpu")


def test_the_chapter_3_regression_helpers():
    torch.manual_seed(0)
    w, b = torch.tensor([2.0, -3.4]), 4.2
    X, y = d2l.synthetic_data(w, b, 1000)
    assert (X.shape, y.shape) == ((1000, 2), (1000, 1))
    residual = y - d2l.linreg(X, w.reshape(2, 1), b)
    assert 0.005 < float(residual.std()) < 0.015  # the noise: N(0, 0.01)
    torch.testing.assert_close(d2l.squared_loss(torch.tensor([[1.0], [3.0]]),
                                                torch.tensor([2.0, 3.0])),
                               torch.tensor([[0.5], [0.0]]))


def test_all_lists_what_the_package_has():
    assert sorted(d2l.__all__) == sorted(set(d2l.__all__))
    for name in d2l.__all__:
        assert getattr(d2l, name) is not None, name
