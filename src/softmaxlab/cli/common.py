"""Options and helpers shared by several commands."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import sys
import threading

from ..config import TrainConfig
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


def add_data_args(p: argparse.ArgumentParser, dataset: bool = True, group=None) -> None:
    """--dataset (unless ``dataset`` is false), --data-dir, --mirror, --offline, --no-progress."""
    from ..data import SPECS

    g = group or p.add_argument_group("data")
    if dataset:
        g.add_argument("--dataset", choices=list(SPECS), default=None,
                       help=f"which dataset (default: {DEFAULT_DATASET})")
    g.add_argument("--data-dir", metavar="DIR", default=None,
                   help="use only DIR, which holds the four IDX files (.gz or raw), downloading "
                        "missing ones into it (default: $SOFTMAXLAB_DATA, else look in "
                        "~/.cache/softmaxlab/<dataset>, /usr/share/datasets/fashion-mnist (Debian's "
                        "dataset-fashion-mnist), ./data/<Name>/raw, ../data/<Name>/raw, then "
                        "download into the cache)")
    g.add_argument("--mirror", metavar="URL", default=None,
                   help="download from URL instead of the known mirrors (default: "
                        "$SOFTMAXLAB_MIRROR, else the dataset's mirrors in order)")
    g.add_argument("--offline", action="store_true", default=None,
                   help="never download (default: off; SOFTMAXLAB_OFFLINE=1 turns it on)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (default: shown when stderr is a terminal)")


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


def load_data(args, dataset: str | None = None, data_dir: str | None = None):
    """(train, test) ImageDatasets as the data options say; ``dataset`` and ``data_dir`` (where
    the args give none) are a run's."""
    from ..data import load_dataset

    import_in_background("softmaxlab.plots")  # every command that loads data draws pictures
    return load_dataset(dataset or args.dataset or DEFAULT_DATASET,
                        data_dir=args.data_dir or data_dir, mirror=args.mirror,
                        offline=args.offline, progress=show_progress(args))


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
