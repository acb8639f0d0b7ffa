"""A training run, put together from its configuration: data split, preprocessing, model, updater.

``TrainConfig`` holds every training option; ``Session`` builds what a run needs from it and
trains epoch by epoch (``Session.fit``), calling back after each epoch so the caller can save a
checkpoint or print a line. Everything random derives from ``seed`` (and the epoch), so a run
stopped after epoch k and resumed gives the same parameters as one that never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from .data import ImageDataset
from .data.datasets import epoch_permutation
from .models import ScratchSoftmaxRegression, create_model
from .train import SGD, Loss, evaluate_accuracy, get_loss, train_epoch

IMPLS = ("scratch", "concise")
OPTIMIZERS = ("sgd", "lbfgs")
SCHEDULES = ("constant", "cosine", "step")
VAL_STREAM = 2**32 - 1  # the SeedSequence "epoch" that draws the validation split
LBFGS_ITERS = 20  # inner L-BFGS iterations per outer step (one history row)


@dataclass
class TrainConfig:
    """Every option of a training run; the CLI's help documents the defaults."""

    impl: str = "scratch"
    loss: str = "ce"
    epochs: int = 10
    batch_size: int = 256
    lr: float | None = None  # None: the loss's default learning rate
    seed: int = 0
    dataset: str = "fashion-mnist"
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    standardize: bool = False
    val_split: int = 0
    augment: bool = False  # random shifts of up to 1 pixel while training
    lbfgs_iters: int = LBFGS_ITERS

    def __post_init__(self) -> None:
        self.validate()

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else get_loss(self.loss).default_lr

    def validate(self) -> None:
        """Raise ValueError naming the first bad value and what is allowed."""
        def bad(name, value, allowed):
            raise ValueError(f"{name}={value!r} is not allowed; {allowed}")

        if self.impl not in IMPLS:
            bad("impl", self.impl, f"choose one of {', '.join(IMPLS)}")
        get_loss(self.loss)
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", self.optimizer, f"choose one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            bad("lr_schedule", self.lr_schedule, f"choose one of {', '.join(SCHEDULES)}")
        if not isinstance(self.epochs, int) or self.epochs < 0:
            bad("epochs", self.epochs, "it must be an integer >= 0")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            bad("batch_size", self.batch_size, "it must be an integer >= 1")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            bad("lr", self.lr, "it must be a number > 0")
        if not 0 <= self.momentum < 1:
            bad("momentum", self.momentum, "it must be in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            bad("weight_decay", self.weight_decay, "it must be >= 0")
        if not isinstance(self.val_split, int) or self.val_split < 0:
            bad("val_split", self.val_split, "it must be an integer >= 0")
        if not isinstance(self.lbfgs_iters, int) or self.lbfgs_iters < 1:
            bad("lbfgs_iters", self.lbfgs_iters, "it must be an integer >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def lr_at(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (0-based) under the config's schedule."""
    lr, total = config.learning_rate, max(config.epochs, 1)
    if config.lr_schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * epoch / total))
    if config.lr_schedule == "step":  # x0.1 at half and at three quarters of the epochs
        return lr * (0.1 ** ((epoch >= total // 2) + (epoch >= (3 * total) // 4)))
    return lr


@dataclass
class Standardizer:
    """Per-pixel standardisation fitted on the training split: (x - mean) / std.

    mean, std: float32 of the image shape (H, W); a pixel with (near) zero spread gets std 1.
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, images: torch.Tensor, chunk: int = 256) -> Standardizer:
        """images uint8 (N, H, W) -> the Standardizer of their [0, 1] values.

        The sums of the pixel values and of their squares are exact (integers in float64), and
        taken over chunks small enough to stay in cache (3x faster than over large ones).
        """
        flat = images.reshape(len(images), -1)
        s = torch.zeros(flat.shape[1], dtype=torch.float64)
        s2 = torch.zeros_like(s)
        for i in range(0, len(flat), chunk):
            x = flat[i:i + chunk].to(torch.float64)
            s += x.sum(0)
            s2 += (x * x).sum(0)
        n = len(images)
        mean = s / (255.0 * n)
        std = (s2 / (255.0 * 255.0 * n) - mean * mean).clamp_min(0).sqrt()
        std = torch.where(std < 1e-3, torch.ones_like(std), std)
        shape = images.shape[1:]
        return cls(mean.float().reshape(shape), std.float().reshape(shape))

    def __post_init__(self) -> None:
        # (x - mean) / std as one fused multiply-add: x * (1 / std) + (-mean / std)
        self._scale = 1.0 / self.std
        self._shift = -self.mean / self.std

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """X float (B, 1, H, W) in [0, 1] -> standardised, in place (one pass over X)."""
        return torch.addcmul(self._shift, X, self._scale, out=X)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "std": self.std}


def shift_batch(X: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Augmentation: shift each image of X (B, 1, H, W) by -1, 0 or +1 pixel in x and y."""
    B, C, H, W = X.shape
    shifts = torch.randint(0, 3, (B, 2), generator=generator)  # offsets into the padded image
    padded = torch.nn.functional.pad(X, (1, 1, 1, 1))  # (B, C, H + 2, W + 2), zeros around
    rows = (torch.arange(H).unsqueeze(0) + shifts[:, :1]).view(B, 1, H, 1)
    cols = (torch.arange(W).unsqueeze(0) + shifts[:, 1:]).view(B, 1, 1, W)
    return padded[torch.arange(B).view(B, 1, 1, 1), torch.arange(C).view(1, C, 1, 1), rows, cols]


def split_validation(train: ImageDataset, n_val: int, seed: int) -> tuple[ImageDataset, ImageDataset | None]:
    """Hold out ``n_val`` training examples, drawn from ``seed``; returns (train, val or None)."""
    if n_val == 0:
        return train, None
    if n_val >= len(train):
        raise ValueError(
            f"val_split={n_val} leaves no training data: the training split has {len(train)} "
            "examples"
        )
    order = epoch_permutation(len(train), seed, VAL_STREAM)
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return train.subset(train_idx), train.subset(val_idx)


class Session:
    """Everything one run needs, built from a config and the data.

    Attributes: config, train/val/test datasets, standardizer (or None), model, loss, updater.
    """

    def __init__(self, config: TrainConfig, train: ImageDataset, test: ImageDataset,
                 eval_batch_size: int = 10000) -> None:
        self.config = config
        self.loss: Loss = get_loss(config.loss)
        self.train, self.val = split_validation(train, config.val_split, config.seed)
        self.test = test
        self.eval_batch_size = eval_batch_size
        self.standardizer = Standardizer.fit(self.train.images) if config.standardize else None
        self.model = create_model(config.impl, self.train.num_features, self.train.num_classes,
                                  config.seed)
        self.params: list[torch.Tensor] = list(self.model.parameters())
        self.optimizer = self._make_optimizer()
        self._full_X: torch.Tensor | None = None

    # ------------------------------------------------------------------ optimizers

    def _make_optimizer(self) -> torch.optim.Optimizer | SGD:
        c = self.config
        if c.optimizer == "lbfgs":
            return torch.optim.LBFGS(self.params, lr=1.0, max_iter=c.lbfgs_iters,
                                     history_size=10, line_search_fn="strong_wolfe",
                                     tolerance_grad=1e-9, tolerance_change=1e-12)
        if c.impl == "scratch":
            # the chapter's path: a custom updater (its sgd), folded into the backward pass
            return SGD(self.params, c.learning_rate, c.momentum, c.weight_decay)
        # the concise path: a torch.optim.Optimizer
        return torch.optim.SGD(self.params, lr=c.learning_rate, momentum=c.momentum,
                               weight_decay=c.weight_decay)

    def set_lr(self, lr: float) -> None:
        if isinstance(self.optimizer, SGD):
            self.optimizer.lr = lr
        elif self.config.optimizer == "sgd":
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    # ------------------------------------------------------------------ data

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        """The model's preprocessing of float images in [0, 1] (in place where it can)."""
        return self.standardizer(X) if self.standardizer is not None else X

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        c = self.config
        batches = self.train.batches(c.batch_size, shuffle=True, seed=c.seed, epoch=epoch,
                                     reuse=True)
        if not c.augment and self.standardizer is None:
            return batches  # (no generator around it: one less frame per batch)
        gen = None
        if c.augment:
            state = np.random.SeedSequence([c.seed, epoch, 1]).generate_state(1)[0]
            gen = torch.Generator().manual_seed(int(state))
        return self._prepared(batches, gen)

    def _prepared(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
                  gen: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for X, y in batches:
            if gen is not None:
                X = shift_batch(X, gen)
            yield self.transform(X), y

    def eval_batches(self, dataset: ImageDataset) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        for X, y in dataset.batches(self.eval_batch_size):
            yield self.transform(X), y

    # ------------------------------------------------------------------ training

    def train_one(self, epoch: int, wrap: Callable[[Iterable, int], Iterable] | None = None
                  ) -> tuple[float, float]:
        """Train epoch ``epoch`` (0-based); returns (train loss, train acc)."""
        if self.config.optimizer == "lbfgs":
            return self._lbfgs_step()
        self.set_lr(lr_at(self.config, epoch))
        batches: Iterable = self.train_batches(epoch)
        if wrap is not None:
            batches = wrap(batches, -(-len(self.train) // self.config.batch_size))
        return train_epoch(self.model, batches, self.loss, self.optimizer)

    def _full_batch(self) -> torch.Tensor:
        if self._full_X is None:
            self._full_X = self.transform(self.train.to_float()).reshape(len(self.train), -1)
        return self._full_X

    def _lbfgs_step(self) -> tuple[float, float]:
        """One outer L-BFGS step on the full training set (mean loss + weight_decay/2 ‖W‖²)."""
        X, y = self._full_batch(), self.train.labels
        wd = self.config.weight_decay
        W = self.params[0]
        scratch = isinstance(self.model, ScratchSoftmaxRegression)

        def closure():
            self.optimizer.zero_grad()
            if scratch:
                with torch.no_grad():
                    l, d_t = self.loss.value_and_grad(self.model.scores_t(X), y, 0)
                    loss = l.mean()
                    self.model.backward(X, d_t.t(), scale=1.0 / len(y))
                    W.grad = W.grad.contiguous()  # L-BFGS flattens gradients with view(-1)
                    if wd:
                        loss = loss + 0.5 * wd * (W * W).sum()
                        W.grad.add_(W, alpha=wd)
            else:
                loss = self.loss.value(self.model(X), y).mean()
                if wd:
                    loss = loss + 0.5 * wd * (W * W).sum()
                loss.backward()
            return loss

        self.optimizer.step(closure)
        with torch.no_grad():
            o = self.model(X)
            return float(self.loss.value(o, y).mean()), float((o.argmax(1) == y).float().mean())

    def evaluate(self, dataset: ImageDataset) -> float:
        return evaluate_accuracy(self.model, self.eval_batches(dataset))

    def fit(self, history: Sequence[dict] = (), callbacks: Sequence[Callable[[list[dict]], None]] = (),
            wrap: Callable[[Iterable, int], Iterable] | None = None) -> list[dict]:
        """Train from ``len(history)`` up to ``config.epochs`` epochs; returns the history.

        Rows: epoch (1-based), train_loss, train_acc, [val_acc], test_acc, seconds (the training
        pass alone), lr. ``callbacks`` get the history after each epoch.
        """
        history = list(history)
        for epoch in range(len(history), self.config.epochs):
            t0 = time.perf_counter()
            train_loss, train_acc = self.train_one(epoch, wrap)
            seconds = time.perf_counter() - t0
            row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc}
            if self.val is not None:
                row["val_acc"] = self.evaluate(self.val)
            row["test_acc"] = self.evaluate(self.test)
            row["seconds"] = seconds
            row["lr"] = (lr_at(self.config, epoch) if self.config.optimizer == "sgd" else None)
            history.append(row)
            for cb in callbacks:
                cb(history)
        return history
