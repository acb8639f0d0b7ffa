"""Options and helpers shared by several commands."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import sys
import threading

from ..config import DATASET_HELP, TrainConfig
from ..errors import ConfigError

DEFAULT_DATASET = TrainConfig.dataset  # (a dataclass field's default is its class attribute)


class UsageError(ConfigError):
    """A bad combination of command-line options: reported with the usage, exit code 2."""


def _number(kind: type, minimum: float, inclusive: bool):
    """An argparse type: a finite ``kind`` (int/float) >= ``minimum`` (> when not inclusive)."""
    bound = f"{'>=' if inclusive else '>'} {minimum:g}"

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not (math.isfinite(v) and (v >= minimum if inclusive else v > minimum)):
            raise argparse.ArgumentTypeError(f"{v} is not allowed; it must be a number {bound}")
        return v

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _number(int, 1, inclusive=True)
nonneg_int = _number(int, 0, inclusive=True)
positive_float = _number(float, 0, inclusive=False)
nonneg_float = _number(float, 0, inclusive=True)


# the flags of your own data, which a run records (not for the named datasets)
OWN_DATA_FLAGS = ("test_data", "test_split", "split_seed", "image_shape", "image_size", "invert",
                  "trim", "strict")


def _image_shape(text: str) -> tuple[int, int]:
    from ..data import parse_image_shape

    try:
        return parse_image_shape(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_data_args(p: argparse.ArgumentParser, dataset: bool = True, group=None,
                  own_data: bool = True) -> None:
    """--dataset (unless ``dataset`` is false), --data-dir, --mirror, --offline, --no-progress,
    and (``own_data``) the options of your own data."""
    g = group or p.add_argument_group("data")
    if dataset:
        g.add_argument("--dataset", metavar="SPEC", default=None,
                       help=f"{DATASET_HELP} (default: {DEFAULT_DATASET})")
    g.add_argument("--data-dir", metavar="DIR", default=None,
                   help="for a named dataset: use only DIR, which holds its four IDX files (.gz "
                        "or raw; EMNIST: or its gzip.zip), downloading missing ones into it; raw "
                        "files are memory-mapped (default: $SOFTMAXLAB_DATA, "
                        "else look in ~/.cache/softmaxlab/<dataset>, /usr/share/datasets/"
                        "fashion-mnist (Debian's dataset-fashion-mnist), ./data/<Name>/raw, "
                        "../data/<Name>/raw, then download into the cache)")
    g.add_argument("--mirror", metavar="URL", default=None,
                   help="download from URL instead of the known mirrors (default: "
                        "$SOFTMAXLAB_MIRROR, else the dataset's mirrors in order)")
    g.add_argument("--offline", action="store_true", default=None,
                   help="never download (default: off; SOFTMAXLAB_OFFLINE=1 turns it on)")
    if own_data:
        o = p.add_argument_group("your own data (recorded in the run)")
        o.add_argument("--test-data", metavar="SPEC", default=None,
                       help="a separate test set: its own test split if it has one, else all of "
                            "it (default: the data's own test split, else a held-out part)")
        o.add_argument("--test-split", type=_fraction, default=None, metavar="X",
                       help="the share of each class held out as the test set when the data has "
                            "none (default: 0.2)")
        o.add_argument("--split-seed", type=nonneg_int, default=None, metavar="N",
                       help="seed of that held-out split (default: 0)")
        o.add_argument("--image-shape", type=_image_shape, default=None, metavar="H,W",
                       help="csv and flat arrays: how each row's values form an image (default: "
                            "a square)")
        o.add_argument("--image-size", type=positive_int, default=None, metavar="N",
                       help="image folders and Parquet: the side the images are resized to "
                            "(default: 28)")
        o.add_argument("--invert", choices=["never", "auto", "always"], default=None,
                       help="image folders and Parquet: make objects light on black as predict "
                            "does for photos: auto when the border is light (default: never)")
        o.add_argument("--trim", action="store_true", default=None,
                       help="image folders and Parquet: crop each image to its object before "
                            "resizing (default: off)")
        o.add_argument("--strict", action="store_true", default=None,
                       help="an image that cannot be decoded is an error, not skipped with a "
                            "note (default: off)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (default: shown when stderr is a terminal)")


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not allowed; it must be between 0 and 1")
    return v


def own_data_given(args) -> list[str]:
    """The flags of your own data given on the command line, as --flag names."""
    return [f"--{name.replace('_', '-')}" for name in OWN_DATA_FLAGS
            if getattr(args, name, None) is not None]


def show_progress(args) -> bool:
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def import_in_background(module: str) -> threading.Thread:
    """Start importing ``module`` in a thread; returns the thread.

    For work that releases the GIL meanwhile (reading and checking the data files: gunzip and
    md5 do), so the import costs no wall time. A failure is left to the import that needs the
    module, which then raises it where it belongs.
    """
    def work() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module(module)

    thread = threading.Thread(target=work, name=f"import {module}")
    thread.start()
    return thread


def load_data(args, dataset: str | None = None, data_dir: str | None = None,
              record: dict | None = None, shard: tuple[int, int] | None = None):
    """(train, test, record): the ImageDatasets as the data options say, and for your own data
    the record of what was read (else None). ``dataset`` and ``data_dir`` (where the args give
    none) and ``record`` (to read exactly that data again) are a run's; ``shard`` (rank,
    world_size): load only that share of the training rows."""
    from ..data import DataOptions, load_data_spec, load_dataset, load_from_record, parse_spec

    import_in_background("softmaxlab.plots")  # every command that loads data draws pictures
    progress = show_progress(args)
    if record is not None:
        return (*load_from_record(record, progress, shard), record)
    spec = dataset or args.dataset or DEFAULT_DATASET
    if parse_spec(spec).named:
        given = own_data_given(args)
        if given:
            raise UsageError(f"{', '.join(given)} apply to your own data, not to the named "
                             f"dataset {spec}")
        return (*load_dataset(spec, data_dir=args.data_dir or data_dir, mirror=args.mirror,
                              offline=args.offline, progress=progress, shard=shard), None)
    given = {name: getattr(args, name, None) for name in OWN_DATA_FLAGS}
    options = DataOptions(
        test_data=given["test_data"], test_split=given["test_split"],
        split_seed=given["split_seed"] or 0, image_shape=given["image_shape"],
        image_size=given["image_size"], invert=given["invert"] or "never",
        trim=bool(given["trim"]), strict=bool(given["strict"]))
    return load_data_spec(spec, options, progress, shard)


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def thread_count(requested: int | None, processes: int = 1) -> tuple[int, str | None]:
    """The torch threads of each of ``processes`` processes on this machine for ``--threads
    requested``, and a note when it was clamped. The cores are shared out (at least 1 each):
    more threads than that only contend (and very many cannot even be started)."""
    cores = default_threads()
    share = max(1, cores // processes)
    note = None
    if processes > cores:
        note = (f"note: {processes} processes on {cores} cores: each gets 1 thread, and they "
                "take turns on the cores")
    if requested is None:
        return share, note
    if requested <= share:
        return requested, note
    each = "" if processes == 1 else f" for each of {processes} processes"
    return share, (f"note: --threads {requested} is more than the {share} cores available here"
                   f"{each}; using {share}")


def set_threads(requested: int | None, processes: int = 1, say=print) -> int:
    """Set torch's thread count by ``thread_count``, saying its note; the count."""
    import torch

    n, note = thread_count(requested, processes)
    if note:
        say(note, file=sys.stderr)
    torch.set_num_threads(n)
    return n


def tqdm_wrap(enabled: bool, desc: str):
    """A ``wrap(iterable, total)`` that shows a tqdm bar on stderr when ``enabled``."""
    def wrap(iterable, total):
        if not enabled:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, unit="batch", mininterval=0.2)
    return wrap
