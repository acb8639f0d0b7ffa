"""The command line: ``softmaxlab <command> ...``; the only place that prints.

Each command lives in its own module with ``register(subparsers)``; its handler returns an exit
code. The exit codes are those of ``softmaxlab.errors``: softmaxlab's own errors end with one line
on stderr (2, or 3 when training diverged), anything else is a bug and shows its traceback (1);
Ctrl-C gives 130, a closed output pipe 141 and SIGTERM 143. ``--debug`` or ``SOFTMAXLAB_DEBUG=1`` shows the traceback of
every error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback

from .. import __version__
from ..errors import (
    EXIT_BUG,
    EXIT_SIGINT,
    EXIT_SIGPIPE,
    EXIT_SIGTERM,
    SoftmaxlabError,
    Terminated,
)

# command modules, in the order `softmaxlab --help` lists them
COMMANDS = ["train", "evaluate", "predict", "report", "export", "show", "data", "losses"]
DEBUG_HELP = "show the traceback of every error (default: off; SOFTMAXLAB_DEBUG=1 turns it on)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softmaxlab",
        description="Softmax regression on Fashion-MNIST and other IDX image datasets.",
        epilog="Exit codes: 0 success, 1 a bug (traceback shown), 2 bad input or an OS fault on "
               "your paths, 3 training diverged, 130 interrupted, 141 output pipe closed, 143 "
               "terminated.",
    )
    parser.add_argument("--version", action="version", version=f"softmaxlab {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).register(sub)
    for command in sub.choices.values():  # `softmaxlab COMMAND ... --debug` works too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help=DEBUG_HELP)
    return parser


def _debug(args: argparse.Namespace) -> bool:
    return args.debug or os.environ.get("SOFTMAXLAB_DEBUG", "") not in ("", "0")


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (argparse's usage errors raise SystemExit(2))."""
    from .common import UsageError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return int(args.handler(args) or 0)
    except UsageError as e:
        if _debug(args):
            traceback.print_exc()
        args.subparser.error(str(e))  # prints usage, exits 2
    except SoftmaxlabError as e:
        if _debug(args):
            traceback.print_exc()
        print(f"softmaxlab {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_SIGINT
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


def run(argv: list[str] | None = None) -> None:
    """The ``softmaxlab`` command: ``main``, then end the process at once with its exit code.

    Ending the process with ``os._exit`` skips the interpreter's teardown (with torch loaded it
    takes about 0.5 s). What is guaranteed when it does: every file the command wrote was written
    in a ``with`` block and is closed and renamed into place (``softmaxlab.fsutil``); a
    checkpoint's files (model, optimiser state, history, state.json) are also fsynced, file and
    folder, so they survive a power loss; pictures, reports and other files are not fsynced.
    The threads the command started are joined and stdout and stderr flushed before the exit.
    A bug's traceback is printed and the exit code is 1.
    """
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's --help, --version and usage errors
        code = e.code
    except BrokenPipeError:  # the reader of stdout went away (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_SIGPIPE
    except Exception:  # noqa: BLE001 (a bug: show it, so that it gets reported)
        traceback.print_exc()
        code = EXIT_BUG
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or a closed stream
            pass
    os._exit(code)
