"""The command line: ``softmaxlab <command> ...``; the only place that prints.

Each command lives in its own module with ``register(subparsers)``; its handler returns an exit
code. Errors a user can fix (missing data, bad files, bad values) end with one message on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__

# command modules, in the order `softmaxlab --help` lists them
COMMANDS = ["train", "evaluate", "predict", "report", "show", "losses"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softmaxlab",
        description="Softmax regression on Fashion-MNIST and other IDX image datasets.",
    )
    parser.add_argument("--version", action="version", version=f"softmaxlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .common import UsageError, user_errors

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except UsageError as e:
        args.subparser.error(str(e))  # prints usage, exits 2
    except user_errors() as e:
        print(f"softmaxlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def run(argv: list[str] | None = None) -> None:
    """The ``softmaxlab`` command: ``main``, then end the process at once with its exit code.

    When ``main`` returns, every file is written (atomically, and synced) and the output is
    flushed here, so nothing is left for the interpreter's teardown to do; with torch loaded
    that teardown takes about 0.5 s, a seventh of a whole training run. ``main`` itself returns
    normally, for callers in Python.
    """
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's --help, --version and usage errors
        code = e.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or a closed stream
            pass
    os._exit(code)
