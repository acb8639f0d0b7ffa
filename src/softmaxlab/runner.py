"""A training run, put together from its configuration: data split, preprocessing, model, optimiser.

``Session`` builds what a run needs from a ``TrainConfig`` and trains epoch by epoch
(``Session.fit``), calling back after each epoch so the caller can save a checkpoint or print a
line. The from-scratch model with SGD trains on the tuned path (``softmaxlab.fast``), the concise
model on the chapter's plain loop (``train.train_epoch``) with ``torch.optim.SGD``, and L-BFGS on
the full-batch objective (``models.objective`` or autograd). Everything random derives from
``seed`` (and the epoch), so a run stopped after epoch k and resumed gives the same parameters as
one that never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from . import distributed
from .config import RECIPES, TrainConfig, lr_at
from .data import ImageDataset
from .data.datasets import epoch_permutation
from .data.rows import part_of
from .distributed import Group
from .errors import ConfigError, TrainingDiverged
from .fast import FastSGD, GradHook, Wrap
from .functional import Loss, get_loss
from .models import (
    ScratchSoftmaxRegression,
    SoftmaxModel,
    create_model,
    objective,
    weights,
    weights_grad,
)
from .preprocess import Standardizer, shift_batch
from .train import evaluate_accuracy, train_epoch

__all__ = ["RECIPES", "Session", "Standardizer", "TrainConfig", "lr_at", "split_validation"]

VAL_STREAM = 2**32 - 1  # the SeedSequence "epoch" that draws the validation split
EVAL_BATCH = 10000  # test images per forward pass when evaluating


DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``--device``: auto (CUDA when there is a GPU, else the CPU), cpu, cuda or mps; with
    several processes on a machine each CUDA process takes its local GPU."""
    if name not in DEVICES:
        raise ConfigError(f"--device {name} is not allowed; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: this machine has no CUDA GPU that torch can use "
                              f"(torch {torch.__version__}); use --device cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: Apple's Metal is not available here; use --device cpu "
                          "or auto")
    return torch.device(name)


def split_validation(train: ImageDataset, n_val: int, seed: int, stream: int | None = None
                     ) -> tuple[ImageDataset, ImageDataset | None]:
    """Hold out ``n_val`` training examples, drawn from ``seed`` (and ``stream``: a shard's);
    returns (train, val or None)."""
    if n_val == 0:
        return train, None
    if n_val >= len(train):
        raise ConfigError(f"val_split={n_val} leaves no training data: the training split has "
                          f"{len(train)} examples")
    order = epoch_permutation(len(train), seed, VAL_STREAM, train.images.device, stream)
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return train.subset(train_idx), train.subset(val_idx)


class Session:
    """Everything one run needs, built from a config and the data.

    Attributes: config, train/val/test datasets, standardizer (or None), model, loss, optimizer
    (``FastSGD``, ``torch.optim.SGD`` or ``torch.optim.LBFGS``). ``grad_hook``: see ``fast``.
    """

    def __init__(self, config: TrainConfig, train: ImageDataset, test: ImageDataset,
                 eval_batch_size: int = EVAL_BATCH, group: Group | None = None,
                 device: torch.device | str | None = None) -> None:
        if group is not None and config.augment:
            raise ConfigError("distributed training does not take --augment; run augmentation "
                              "in one process")
        self.config, self.group = config, group
        self.loss: Loss = get_loss(config.loss)
        if device is not None:  # the data lives on the device; batches are gathered there
            train, test = train.to(device), test.to(device)
        # sharded: ``train`` is this rank's share of the rows (each rank its own, see
        # ``distributed``); ``rows`` is every rank's count, and the shard's own random streams
        # (validation split, shuffles) are rank + 1
        self.sharded = config.shard and group is not None
        self.stream = group.rank + 1 if self.sharded else None
        self.rows: tuple[int, ...] | None = None
        if self.sharded:
            start, stop = part_of(config.val_split, group.rank, group.world_size)
            self.train, self.val = split_validation(train, stop - start, config.seed, self.stream)
            self.rows = group.gather_sizes(len(self.train))
        else:
            self.train, self.val = split_validation(train, config.val_split, config.seed)
        self.test = test
        self.eval_batch_size = eval_batch_size
        self.standardizer = self._fit_standardizer() if config.standardize else None
        self.model = create_model(config.impl, self.train.num_features, self.train.num_classes,
                                  config.seed, device=self.train.images.device)
        self.optimizer = self._make_optimizer()
        self.grad_hook: GradHook | None = None
        self._full_X: torch.Tensor | None = None

    @property
    def n_train(self) -> int:
        """The training examples of all processes (this one's own when not sharded)."""
        return sum(self.rows) if self.rows is not None else len(self.train)

    def _fit_standardizer(self) -> Standardizer:
        """The training split's Standardizer; sharded: of all the shards' rows together."""
        sums = Standardizer.sums(self.train.images)
        if self.sharded:
            sums = self.group.all_reduce(sums)
        return Standardizer.from_sums(sums, self.train.image_shape)

    def _make_optimizer(self) -> FastSGD | torch.optim.Optimizer:
        c, params = self.config, list(self.model.parameters())
        if c.optimizer == "lbfgs":
            return torch.optim.LBFGS(params, lr=1.0, max_iter=c.lbfgs_iters, history_size=10,
                                     line_search_fn="strong_wolfe", tolerance_grad=1e-9,
                                     tolerance_change=1e-12)
        if isinstance(self.model, ScratchSoftmaxRegression):
            return FastSGD(self.model, c.loss, c.learning_rate, c.momentum, c.weight_decay)
        return torch.optim.SGD(params, lr=c.learning_rate, momentum=c.momentum,
                               weight_decay=c.weight_decay)

    def set_lr(self, lr: float) -> None:
        if isinstance(self.optimizer, FastSGD):
            self.optimizer.lr = lr
        elif isinstance(self.optimizer, torch.optim.SGD):
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    # ------------------------------------------------------------------ data

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        """The model's preprocessing of float images in [0, 1]; a new tensor where it changes X."""
        return self.standardizer(X) if self.standardizer is not None else X

    def _prepare(self, epoch: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Epoch ``epoch``'s preparation of a training batch (in place), or None for none."""
        gen = None
        if self.config.augment:
            state = np.random.SeedSequence([self.config.seed, epoch, 1]).generate_state(1)[0]
            gen = torch.Generator().manual_seed(int(state))
        standardizer = self.standardizer
        if gen is None:  # None, or the Standardizer (callable, and fast.FastSGD folds it in)
            return standardizer

        def prepare(X: torch.Tensor) -> torch.Tensor:
            if gen is not None:
                X = shift_batch(X, gen)
            return X if standardizer is None else standardizer.apply_(X)

        return prepare

    def eval_batches(self, dataset: ImageDataset) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for X, y in dataset.batches(self.eval_batch_size):
            yield self.transform(X), y

    def inference_model(self) -> SoftmaxModel:
        """The model as trained so far, as a ``SoftmaxModel`` (sharing the parameters)."""
        W, b = weights(self.model)
        return SoftmaxModel(W, b, self.standardizer, self.train.class_names,
                            self.train.image_shape)

    # ------------------------------------------------------------------ training

    def train_one(self, epoch: int, wrap: Wrap | None = None) -> tuple[float, float]:
        """Train epoch ``epoch`` (0-based); returns (train loss, train acc)."""
        c = self.config
        if c.optimizer == "lbfgs":
            return self._lbfgs_step()
        self.set_lr(lr_at(c, epoch))
        prepare = self._prepare(epoch)
        if self.group is not None:
            return self._train_data_parallel(epoch, prepare, wrap)
        if isinstance(self.optimizer, FastSGD):
            order = epoch_permutation(len(self.train), c.seed, epoch, self.train.images.device)
            return self.optimizer.train_epoch(self.train.images, self.train.labels, c.batch_size,
                                              order, prepare, wrap, self.grad_hook)
        batches: Iterable = self.train.batches(c.batch_size, shuffle=True, seed=c.seed, epoch=epoch)
        if prepare is not None:
            batches = ((prepare(X), y) for X, y in batches)
        if wrap is not None:
            batches = wrap(iter(batches), -(-len(self.train) // c.batch_size))
        return train_epoch(self.model, batches, self.loss, self.optimizer)

    def _train_data_parallel(self, epoch: int, prepare, wrap) -> tuple[float, float]:
        """This rank's part of epoch ``epoch`` (see ``softmaxlab.distributed``); sharded, the
        shuffle is of this rank's rows, from its own stream."""
        c, group = self.config, self.group
        order = epoch_permutation(len(self.train), c.seed, epoch, self.train.images.device,
                                  self.stream)
        if isinstance(self.optimizer, FastSGD):
            return self.optimizer.train_epoch(self.train.images, self.train.labels, c.batch_size,
                                              order, prepare, wrap, group.grad_hook,
                                              group.shard(self.rows))
        return distributed.train_epoch(self.model, self.loss, self.optimizer, self.train.images,
                                       self.train.labels, c.batch_size, order, group, prepare,
                                       self.rows)

    def _my_rows(self, n: int) -> slice:
        """This process's contiguous part of n rows (all of them without a group, or when this
        process holds only its shard)."""
        g = self.group
        if g is None or self.sharded:
            return slice(0, n)
        return slice(g.rank * n // g.world_size, (g.rank + 1) * n // g.world_size)

    def _full_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(X (n, D), y (n,)): the training set as one batch (this process's rows of it)."""
        if self._full_X is None:
            rows = self._my_rows(len(self.train))
            X = self.transform(self.train.to_float(rows))
            self._full_X = X.reshape(X.shape[0], -1), self.train.labels[rows]
        return self._full_X

    def _lbfgs_step(self) -> tuple[float, float]:
        """One outer L-BFGS step on the full training set (mean loss + weight_decay/2 ‖W‖²).

        Each evaluation (line-search ones included) is one full-batch loss and gradient: with a
        group, the sum of the processes' parts in one all-reduce, so every process takes the same
        L-BFGS step (Spark MLlib's scheme).
        """
        (X, y), n = self._full_batch(), self.n_train
        wd, params = self.config.weight_decay, list(self.model.parameters())
        W = weights(self.model)[0]

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad()
            value = self._data_term(X, y, n)  # the parameters' .grad set to its gradient
            if self.group is not None:
                flat = self.group.all_reduce(
                    torch.cat([value.detach().reshape(1), *(p.grad.reshape(-1) for p in params)]))
                value, offset = flat[0], 1
                for p in params:
                    p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
                    offset += p.numel()
            with torch.no_grad():
                value = value + 0.5 * wd * (W * W).sum()
                weights_grad(self.model).add_(W, alpha=wd)
            return value

        self.optimizer.step(closure)
        with torch.no_grad():
            o = self.model(X)
            sums = torch.stack([self.loss.value(o, y).double().sum(),
                                (o.argmax(1) == y).sum().double(),
                                torch.tensor(float(y.shape[0]), dtype=torch.float64,
                                             device=y.device)])
        if self.group is not None:
            self.group.all_reduce(sums)
        return float(sums[0] / sums[2]), float(sums[1] / sums[2])

    def _data_term(self, X: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
        """sum over these rows of the loss / n (n: the rows of all processes), its gradient into
        the parameters' .grad (contiguous: L-BFGS flattens them with view)."""
        if isinstance(self.model, ScratchSoftmaxRegression):
            W, b = self.model.W, self.model.b
            with torch.no_grad():
                mean, dW, db = objective(W, b, X, y, self.loss)
                share = X.shape[0] / n
                W.grad, b.grad = (dW * share).contiguous(), db * share
            return mean * share
        value = self.loss.value(self.model(X), y).sum() / n
        value.backward()
        return value.detach()

    def _check_finite(self, epoch: int, train_loss: float) -> None:
        """Raise TrainingDiverged if epoch ``epoch``'s loss or the parameters are not finite.

        Once per epoch: one reduction over the parameters, no sync per batch.
        """
        W, b = weights(self.model)
        finite_params = bool(torch.isfinite(W).all()) and bool(torch.isfinite(b).all())
        if math.isfinite(train_loss) and finite_params:
            return
        c = self.config
        what = f"the training loss became {train_loss}" if not math.isfinite(train_loss) \
            else "the weights became non-finite"
        if c.optimizer == "lbfgs":
            hint = "start a new run with a larger --weight-decay or with --standardize"
        else:
            lr = lr_at(c, epoch)
            hint = (f"start a new run with a smaller --lr than {lr:g} or another --loss "
                    "(--resume would keep this learning rate)")
        raise TrainingDiverged(f"training diverged in epoch {epoch + 1}: {what}; {hint}",
                               epoch=epoch + 1)

    def evaluate(self, dataset: ImageDataset) -> float:
        """The accuracy on ``dataset``; with several processes each evaluates its contiguous
        part (the validation split of a shard: all of it) and the counts are summed."""
        if self.group is None:
            return evaluate_accuracy(self.model, self.eval_batches(dataset))
        g, n = self.group, len(dataset)
        part = dataset if self.sharded and dataset is self.val else \
            dataset.subset(slice(g.rank * n // g.world_size, (g.rank + 1) * n // g.world_size))
        return distributed.evaluate_accuracy(self.model, self.eval_batches(part), g)

    def fit(self, history: Sequence[dict] = (),
            callbacks: Sequence[Callable[[list[dict]], None]] = (),
            wrap: Wrap | None = None) -> list[dict]:
        """Train from ``len(history)`` up to ``config.epochs`` epochs; returns the history.

        Rows: epoch (1-based), train_loss, train_acc, [val_acc], test_acc, seconds (the training
        pass alone), lr. ``callbacks`` get the history after each epoch.
        """
        history = list(history)
        for epoch in range(len(history), self.config.epochs):
            t0 = time.perf_counter()
            train_loss, train_acc = self.train_one(epoch, wrap)
            seconds = time.perf_counter() - t0
            self._check_finite(epoch, train_loss)
            row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc}
            if self.val is not None:
                row["val_acc"] = self.evaluate(self.val)
            row["test_acc"] = self.evaluate(self.test)
            row["seconds"] = seconds
            row["lr"] = lr_at(self.config, epoch) if self.config.optimizer == "sgd" else None
            history.append(row)
            for cb in callbacks:
                cb(history)
        return history
