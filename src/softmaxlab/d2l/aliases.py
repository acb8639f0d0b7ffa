"""The book's tensor aliases: ``d2l.tensor``, ``d2l.reduce_sum``, ``d2l.argmax``, ...

The book writes its code once for several frameworks and reaches the framework through these
names. They are d2l's own definitions for PyTorch: the d2l-zh 2.0 / d2l 0.17 block (``ones`` to
``transpose``) and the names d2l-en 1.x added (``ones_like``, ``zeros_like``, ``randn``,
``int64``, ``sigmoid``, ``batch_matmul``, ``reduce_mean``, ``expand_dims``, ``swapaxes``,
``repeat``, ``nn_Module``). The two blocks agree where they overlap. The method aliases pass
their arguments on unchanged, so ``d2l.reduce_sum(X, 1, keepdim=True)`` (zh) and
``d2l.reduce_sum(X, 1, keepdims=True)`` (en) both work.

This module shadows builtins (``abs``) on purpose and uses none of them.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "abs", "arange", "argmax", "astype", "batch_matmul", "concat", "cos", "cosh", "exp",
    "expand_dims", "eye", "float32", "int32", "int64", "linspace", "log", "matmul", "meshgrid",
    "nn_Module", "normal", "numpy", "ones", "ones_like", "rand", "randn", "reduce_mean",
    "reduce_sum", "repeat", "reshape", "sigmoid", "sin", "sinh", "size", "stack", "swapaxes",
    "tanh", "tensor", "to", "transpose", "zeros", "zeros_like",
]

nn_Module = nn.Module  # en's Module subclasses d2l.nn_Module

# functions and dtypes: torch's own
ones = torch.ones
ones_like = torch.ones_like
zeros = torch.zeros
zeros_like = torch.zeros_like
tensor = torch.tensor
arange = torch.arange
meshgrid = torch.meshgrid
sin = torch.sin
sinh = torch.sinh
cos = torch.cos
cosh = torch.cosh
tanh = torch.tanh
linspace = torch.linspace
exp = torch.exp
log = torch.log
normal = torch.normal
rand = torch.rand
randn = torch.randn
matmul = torch.matmul
int32 = torch.int32
int64 = torch.int64
float32 = torch.float32
concat = torch.cat
stack = torch.stack
abs = torch.abs  # the book's name
eye = torch.eye
sigmoid = torch.sigmoid
batch_matmul = torch.bmm


# methods: d2l.f(x, *args, **kwargs) is x.method(*args, **kwargs)
def numpy(x, *args, **kwargs):
    """``x.detach().numpy()``: a tensor (on the CPU) as a numpy array."""
    return x.detach().numpy(*args, **kwargs)


def size(x, *args, **kwargs):
    """``x.numel()``: the number of elements."""
    return x.numel(*args, **kwargs)


def reshape(x, *args, **kwargs):
    """``x.reshape(...)``."""
    return x.reshape(*args, **kwargs)


def to(x, *args, **kwargs):
    """``x.to(...)``: another device or dtype."""
    return x.to(*args, **kwargs)


def reduce_sum(x, *args, **kwargs):
    """``x.sum(...)``."""
    return x.sum(*args, **kwargs)


def reduce_mean(x, *args, **kwargs):
    """``x.mean(...)``."""
    return x.mean(*args, **kwargs)


def argmax(x, *args, **kwargs):
    """``x.argmax(...)`` (``axis=`` works as ``dim=``)."""
    return x.argmax(*args, **kwargs)


def astype(x, *args, **kwargs):
    """``x.type(dtype)``."""
    return x.type(*args, **kwargs)


def transpose(x, *args, **kwargs):
    """``x.t()``: a matrix transposed."""
    return x.t(*args, **kwargs)


def expand_dims(x, *args, **kwargs):
    """``x.unsqueeze(dim)``."""
    return x.unsqueeze(*args, **kwargs)


def swapaxes(x, *args, **kwargs):
    """``x.swapaxes(a, b)``."""
    return x.swapaxes(*args, **kwargs)


def repeat(x, *args, **kwargs):
    """``x.repeat(...)``."""
    return x.repeat(*args, **kwargs)
