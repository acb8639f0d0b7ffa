"""d2l-en 1.x's object-oriented API (chapters 3 and 4): Module, DataModule, Trainer and the models.

Sections subclass these classes and replace their methods with ``add_to_class``; every method
here calls the others through ``self``, so a replacement is what runs (``Trainer.fit`` calls
``self.prepare_data``, ``self.prepare_model``, ``self.fit_epoch``, which calls
``self.prepare_batch`` and ``self.clip_gradients``). Differences from the book's package:
``FashionMNIST`` serves batches from memory (no torchvision, no workers: ``num_workers`` is kept
but unused); ``Trainer.fit`` trains with one torch thread (``devices.TRAINING_THREADS``) and ends
by showing the board's final state; ``LinearRegression``'s weights really start at N(0, 0.01)
(the book sets them before ``LazyLinear`` exists, which torch ignores).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import HyperParameters
from .data import TensorLoader, fashion_mnist, get_fashion_mnist_labels, take_rows
from .devices import cpu, gpu, num_gpus, training_threads
from .figures import ProgressBoard, show_images

__all__ = [
    "SGD",
    "Classifier",
    "DataModule",
    "FashionMNIST",
    "LinearRegression",
    "LinearRegressionScratch",
    "Module",
    "SoftmaxRegression",
    "SyntheticRegressionData",
    "Trainer",
]


class Module(nn.Module, HyperParameters):
    """The base class of models: ``loss``, ``forward``, ``training_step``, ``validation_step``,
    ``configure_optimizers``; ``plot`` draws a value on ``self.board`` (a ProgressBoard)."""

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__()
        self.save_hyperparameters()
        self.board = ProgressBoard()

    def loss(self, y_hat, y):
        raise NotImplementedError

    def forward(self, X):
        assert hasattr(self, "net"), "Neural network is defined"
        return self.net(X)

    def plot(self, key, value, train):
        """Draw ``value`` on the board as train_<key> (averaged over ``num_train_batches /
        plot_train_per_epoch`` batches) or val_<key> (over ``num_val_batches /
        plot_valid_per_epoch``), against the epoch."""
        assert hasattr(self, "trainer"), "Trainer is not inited"
        self.board.xlabel = "epoch"
        if train:
            x = self.trainer.train_batch_idx / self.trainer.num_train_batches
            n = self.trainer.num_train_batches / self.plot_train_per_epoch
        else:
            x = self.trainer.epoch + 1
            n = self.trainer.num_val_batches / self.plot_valid_per_epoch
        self.board.draw(x, value.detach().to(cpu()).numpy(),
                        ("train_" if train else "val_") + key, every_n=int(n))

    def training_step(self, batch):
        l = self.loss(self(*batch[:-1]), batch[-1])
        self.plot("loss", l, train=True)
        return l

    def validation_step(self, batch):
        l = self.loss(self(*batch[:-1]), batch[-1])
        self.plot("loss", l, train=False)

    def configure_optimizers(self):
        """Minibatch SGD over ``self.parameters()`` at ``self.lr``."""
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def apply_init(self, inputs, init=None):
        """Run ``inputs`` through the model once (lazy layers take their shapes), then apply
        ``init`` to ``self.net``'s modules."""
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)


class DataModule(HyperParameters):
    """The base class of data: ``get_dataloader(train)``, ``train_dataloader()``,
    ``val_dataloader()``, ``get_tensorloader(tensors, train, indices)``."""

    def __init__(self, root="../data", num_workers=4):
        self.save_hyperparameters()

    def get_dataloader(self, train):
        raise NotImplementedError

    def train_dataloader(self):
        return self.get_dataloader(train=True)

    def val_dataloader(self):
        return self.get_dataloader(train=False)

    def get_tensorloader(self, tensors, train, indices=slice(0, None)):
        """Batches ``[X, y, ...]`` of ``tensors[...][indices]`` of ``self.batch_size``, shuffled
        when ``train``: the book's ``DataLoader(TensorDataset(...))``, in memory."""
        tensors = tuple(a[indices] for a in tensors)
        return TensorLoader(tensors, len(tensors[0]), lambda i: [take_rows(t, i) for t in tensors],
                            self.batch_size, train)


class Trainer(HyperParameters):
    """Trains a ``Module`` on a ``DataModule``: ``Trainer(max_epochs).fit(model, data)``."""

    def __init__(self, max_epochs, num_gpus=0, gradient_clip_val=0):
        self.save_hyperparameters()
        self.gpus = [gpu(i) for i in range(min(num_gpus, _available_gpus()))]

    def prepare_data(self, data):
        self.train_dataloader = data.train_dataloader()
        self.val_dataloader = data.val_dataloader()
        self.num_train_batches = len(self.train_dataloader)
        self.num_val_batches = (len(self.val_dataloader)
                                if self.val_dataloader is not None else 0)

    def prepare_model(self, model):
        model.trainer = self
        model.board.xlim = [0, self.max_epochs]
        if self.gpus:
            model.to(self.gpus[0])
        self.model = model

    def fit(self, model, data):
        """``max_epochs`` calls of ``fit_epoch`` (with ``devices.TRAINING_THREADS`` torch
        threads); then the board shows its final state."""
        self.prepare_data(data)
        self.prepare_model(model)
        self.optim = model.configure_optimizers()
        self.epoch = 0
        self.train_batch_idx = 0
        self.val_batch_idx = 0
        with training_threads():
            for epoch in range(self.max_epochs):
                self.epoch = epoch
                self.fit_epoch()
        flush = getattr(getattr(model, "board", None), "flush", None)
        if flush is not None:
            flush()

    def fit_epoch(self):
        """One pass over the training batches (step on each batch's loss), then over the
        validation batches without gradients."""
        self.model.train()
        for batch in self.train_dataloader:
            loss = self.model.training_step(self.prepare_batch(batch))
            self.optim.zero_grad()
            with torch.no_grad():
                loss.backward()
                if self.gradient_clip_val > 0:
                    self.clip_gradients(self.gradient_clip_val, self.model)
                self.optim.step()
            self.train_batch_idx += 1
        if self.val_dataloader is None:
            return
        self.model.eval()
        for batch in self.val_dataloader:
            with torch.no_grad():
                self.model.validation_step(self.prepare_batch(batch))
            self.val_batch_idx += 1

    def prepare_batch(self, batch):
        """The batch on the first GPU when training on GPUs, else as it is."""
        if self.gpus:
            batch = [a.to(self.gpus[0]) for a in batch]
        return batch

    def clip_gradients(self, grad_clip_val, model):
        """Scale the gradients so their global norm is at most ``grad_clip_val``."""
        params = [p for p in model.parameters() if p.requires_grad]
        norm = torch.sqrt(sum(torch.sum(p.grad ** 2) for p in params))
        if norm > grad_clip_val:
            for param in params:
                param.grad[:] *= grad_clip_val / norm


def _available_gpus() -> int:
    return num_gpus()


class SGD(HyperParameters):
    """Minibatch SGD as the book writes it: ``step()`` does p -= lr * p.grad; ``zero_grad()``."""

    def __init__(self, params, lr):
        self.save_hyperparameters()

    def step(self):
        for param in self.params:
            param -= self.lr * param.grad

    def zero_grad(self):
        for param in self.params:
            if param.grad is not None:
                param.grad.zero_()


class SyntheticRegressionData(DataModule):
    """y = X w + b + noise: ``num_train + num_val`` examples, X ~ N(0, 1), noise ~ N(0, noise)."""

    def __init__(self, w, b, noise=0.01, num_train=1000, num_val=1000, batch_size=32):
        super().__init__()
        self.save_hyperparameters()
        n = num_train + num_val
        self.X = torch.randn(n, len(w))
        noise = torch.randn(n, 1) * noise
        self.y = torch.matmul(self.X, w.reshape((-1, 1))) + b + noise

    def get_dataloader(self, train):
        i = slice(0, self.num_train) if train else slice(self.num_train, None)
        return self.get_tensorloader((self.X, self.y), train, i)


class LinearRegressionScratch(Module):
    """Linear regression from scratch: w (num_inputs, 1) ~ N(0, sigma), b = 0, squared loss."""

    def __init__(self, num_inputs, lr, sigma=0.01):
        super().__init__()
        self.save_hyperparameters()
        self.w = torch.normal(0, sigma, (num_inputs, 1), requires_grad=True)
        self.b = torch.zeros(1, requires_grad=True)

    def forward(self, X):
        return torch.matmul(X, self.w) + self.b

    def loss(self, y_hat, y):
        l = (y_hat - y) ** 2 / 2
        return l.mean()

    def configure_optimizers(self):
        return SGD([self.w, self.b], self.lr)


class LinearRegression(Module):
    """Linear regression with ``nn.LazyLinear(1)``, weights from N(0, 0.01), bias 0, MSE loss."""

    def __init__(self, lr):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.LazyLinear(1)
        # the layer's parameters exist after its first input: initialise them then
        self._init_hook = self.net.register_forward_pre_hook(self._initialise)

    def _initialise(self, layer, inputs):
        with torch.no_grad():
            layer.weight.normal_(0, 0.01)
            layer.bias.fill_(0)
        self._init_hook.remove()

    def forward(self, X):
        return self.net(X)

    def loss(self, y_hat, y):
        return nn.MSELoss()(y_hat, y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), self.lr)

    def get_w_b(self):
        return (self.net.weight.data, self.net.bias.data)


class FashionMNIST(DataModule):
    """Fashion-MNIST from memory: ``train`` and ``val`` (the test split), batches
    ``[X (B, 1, H, W) float32, y (B,) int64]`` of ``batch_size``, images resized to ``resize``."""

    def __init__(self, batch_size=64, resize=(28, 28)):
        super().__init__()
        self.save_hyperparameters()
        self.train, self.val = fashion_mnist(resize)

    def text_labels(self, indices):
        """Class indices -> their names."""
        return get_fashion_mnist_labels(indices)

    def get_dataloader(self, train):
        data = self.train if train else self.val
        return data.loader(self.batch_size, shuffle=train)

    def visualize(self, batch, nrows=1, ncols=8, labels=[]):  # noqa: B006 (the book's)
        """The batch's first ``nrows * ncols`` images titled with ``labels`` (default: theirs)."""
        X, y = batch
        if not labels:
            labels = self.text_labels(y)
        show_images(X.squeeze(1), nrows, ncols, titles=labels)


class Classifier(Module):
    """The base class of classifiers: validation loss and accuracy, cross-entropy on logits."""

    def validation_step(self, batch):
        Y_hat = self(*batch[:-1])
        self.plot("loss", self.loss(Y_hat, batch[-1]), train=False)
        self.plot("acc", self.accuracy(Y_hat, batch[-1]), train=False)

    def accuracy(self, Y_hat, Y, averaged=True):
        """The fraction of correct predictions (``averaged``), or 1.0 / 0.0 per example."""
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))
        preds = Y_hat.argmax(axis=1).type(Y.dtype)
        compare = (preds == Y.reshape(-1)).type(torch.float32)
        return compare.mean() if averaged else compare

    def loss(self, Y_hat, Y, averaged=True):
        """Cross-entropy from the logits (the mean, or per example)."""
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))
        Y = Y.reshape((-1,))
        return F.cross_entropy(Y_hat, Y, reduction="mean" if averaged else "none")

    def layer_summary(self, X_shape):
        """Print each layer of ``self.net`` and its output shape for a random input."""
        X = torch.randn(*X_shape)
        for layer in self.net:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


class SoftmaxRegression(Classifier):
    """Softmax regression: ``nn.Flatten()`` then ``nn.LazyLinear(num_outputs)``."""

    def __init__(self, num_outputs, lr):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(num_outputs))

    def forward(self, X):
        return self.net(X)
