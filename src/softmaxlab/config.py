"""Every training option, declared once: name, type, default, allowed values and help.

``TrainConfig``'s fields are the declarations. The command line's flags (with their defaults in
``--help``), the validation of values from Python, the command line and ``config.json``, and
``config.json`` itself all follow from them. ``RECIPES`` are named presets of these options and
``lr_at`` is the learning-rate schedule.
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from numbers import Integral, Real

from .data.specs import SPECS
from .errors import ConfigError
from .functional import LOSSES, get_loss
from .models import IMPLS

DATASET_HELP = ("a named dataset (" + ", ".join(SPECS) + ") or your own data: KIND:PATH with "
                "KIND one of idx (a folder of the four IDX files), csv (label,pixel1,...), folder "
                "(one sub-folder of images per class; train/ and test/ inside, or a held-out "
                "split), npz (x_train, y_train, x_test, y_test), npy (a folder of those .npy "
                "files), parquet (Hugging Face's image and label columns); a path alone is "
                "recognised by its extension or contents")
OPTIMIZERS = ("sgd", "lbfgs")
SCHEDULES = ("constant", "cosine", "step")
MAX_SEED = 2**63 - 1  # torch's and numpy's generators take seeds up to here


def option(default, help: str, *, choices: tuple | None = None, low: float | None = None,
           high: float | None = None, high_open: bool = False, low_open: bool = False,
           group: str = "training", shown_default: str | None = None) -> Field:
    """A training option: a dataclass field carrying its help, allowed values and CLI group.

    low/high: the allowed range (inclusive unless ``*_open``); ``shown_default``: the default as
    ``--help`` shows it, where it is not the value itself.
    """
    return field(default=default, metadata={
        "help": help, "choices": choices, "low": low, "high": high, "low_open": low_open,
        "high_open": high_open, "group": group, "shown_default": shown_default})


@dataclass
class TrainConfig:
    """Every option of a training run (``softmaxlab train --help`` shows the defaults)."""

    impl: str = option(
        "scratch", "scratch: the chapter's W, b with gradients written out; concise: "
        "nn.Sequential(Flatten, Linear) with autograd", choices=IMPLS, group="model and loss")
    loss: str = option(
        "ce", "; ".join(f"{name}: {loss.help}, default lr {loss.default_lr:g}"
                        for name, loss in LOSSES.items()),
        choices=tuple(LOSSES), group="model and loss")
    epochs: int = option(
        10, "epochs in all; with --optimizer lbfgs the number of outer L-BFGS steps; with "
        "--resume the total to reach", low=0)
    batch_size: int = option(256, "minibatch size", low=1)
    lr: float | None = option(
        None, "learning rate", low=0, low_open=True,
        shown_default="the loss's own: " + ", ".join(f"{loss.default_lr:g} for {name}"
                                                     for name, loss in LOSSES.items()))
    seed: int = option(0, "seed of the initial weights, the shuffles and the validation split",
                       low=0, high=MAX_SEED)
    dataset: str = option("fashion-mnist", DATASET_HELP, group="data")
    optimizer: str = option(
        "sgd", "sgd: minibatch SGD; lbfgs: full-batch L-BFGS, one history row per outer step",
        choices=OPTIMIZERS)
    momentum: float = option(0.0, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = option(0.0, "L2 penalty: weight_decay/2 ‖W‖² added to the loss", low=0)
    lr_schedule: str = option(
        "constant", "per-epoch learning rate: constant, cosine to 0, or step (x0.1 at 1/2 and 3/4 "
        "of the epochs)", choices=SCHEDULES)
    standardize: bool = option(
        False, "standardise each pixel with the training split's mean/std (saved with the model, "
        "applied wherever it is used)")
    val_split: int = option(0, "hold out N training images for validation; history gets val_acc",
                            low=0)
    augment: bool = option(False, "shift training images by up to 1 pixel")
    shard: bool = option(
        False, "with several processes, each loads and trains on only its own contiguous share "
        "of the training rows (memory per process ~1/N; shuffled within the share; a resumed run "
        "needs the same number of processes); ignored in one process", group="data")
    lbfgs_iters: int = option(20, "inner L-BFGS iterations per outer step", low=1)

    def __post_init__(self) -> None:
        for f in fields(self):
            check_option(f, getattr(self, f.name))

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else get_loss(self.loss).default_lr

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From ``to_dict()`` output (config.json); unknown keys are ignored, missing ones default."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def option_type(f: Field) -> type:
    """The value type of an option: bool, int, float or str (``float | None`` gives float)."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def rule(f: Field) -> str:
    """What the option's values must be, in words: "it must be an integer >= 0", ..."""
    m, kind = f.metadata, option_type(f)
    if m["choices"]:
        return f"choose one of {', '.join(m['choices'])}"
    if kind is bool:
        return "it must be true or false"
    noun = "an integer" if kind is int else "a number"
    low, high = m["low"], m["high"]
    if low is not None and high is not None:
        if kind is int:
            return f"it must be {noun} from {low:g} to {high}"
        return f"it must be in {'(' if m['low_open'] else '['}{low:g}, {high:g}" \
               f"{')' if m['high_open'] else ']'}"
    if low is not None:
        return f"it must be {noun} {'>' if m['low_open'] else '>='} {low:g}"
    return f"it must be {noun}"


def _allowed(f: Field, value) -> bool:
    m, kind = f.metadata, option_type(f)
    if value is None:
        return f.default is None
    if m["choices"]:
        return value in m["choices"]
    if kind is bool or kind is str:
        return isinstance(value, kind)
    if isinstance(value, bool) or not isinstance(value, Integral if kind is int else Real):
        return False
    if not math.isfinite(value):
        return False
    low, high = m["low"], m["high"]
    if low is not None and (value <= low if m["low_open"] else value < low):
        return False
    return high is None or (value < high if m["high_open"] else value <= high)


def check_option(f: Field, value) -> None:
    """Raise ConfigError naming the option, the value and what is allowed, if it is not."""
    if not _allowed(f, value):
        raise ConfigError(f"{f.name}={value!r} is not allowed; {rule(f)}")


def shown_default(f: Field) -> str:
    """The default as ``--help`` shows it."""
    if f.metadata["shown_default"]:
        return f.metadata["shown_default"]
    if f.default is False:
        return "off"
    return str(f.default) if f.default is not MISSING else "-"


def lr_at(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (0-based) under the config's schedule."""
    lr, total = config.learning_rate, max(config.epochs, 1)
    if config.lr_schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * epoch / total))
    if config.lr_schedule == "step":  # x0.1 at half and at three quarters of the epochs
        return lr * (0.1 ** ((epoch >= total // 2) + (epoch >= (3 * total) // 4)))
    return lr


# `--recipe`: presets of the options above; explicit options override them. `best` is the best
# linear model on raw pixels found, chosen by mean validation accuracy over 3 seeds with
# `--val-split 10000` (never on the test set; docs/recipes.md has the search); `fast` the quickest
# candidate within 0.001 of its validation accuracy.
RECIPES = {
    "chapter": {},
    "best": {"impl": "scratch", "optimizer": "sgd", "epochs": 20, "batch_size": 256, "lr": 0.1,
             "momentum": 0.9, "weight_decay": 1e-4, "lr_schedule": "cosine"},
    "fast": {"impl": "scratch", "optimizer": "sgd", "epochs": 5, "batch_size": 1024, "lr": 0.08,
             "momentum": 0.9, "weight_decay": 1e-3, "lr_schedule": "cosine",
             "standardize": True},
}


def describe_recipe(name: str) -> str:
    """A recipe's options as flags: "--epochs 20 --momentum 0.9 ..." ("no preset" if none)."""
    options = RECIPES[name]
    if not options:
        return "no preset"
    return " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v:g}"
                                                  if isinstance(v, float) else f" {v}")
                    for k, v in options.items())
