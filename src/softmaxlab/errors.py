"""softmaxlab's own exceptions, and the exit code the command line gives each.

Only these become a one-line error on the command line (exit code 2, or 3 for divergence); any
other exception is a bug and shows its traceback (exit code 1). Each class also derives from the
built-in exception that callers in Python would expect (``ValueError`` for bad values, ``OSError``
for the operating system's refusals), so ``except ValueError`` keeps working.

Exit codes of the ``softmaxlab`` command (the README has the same table):

====  ===========================================================================
code  meaning
====  ===========================================================================
0     success
1     a bug: the traceback is shown
2     bad input, usage, or an OS fault on the user's paths: one line, no traceback
3     training diverged
130   interrupted (SIGINT)
143   terminated (SIGTERM)
====  ===========================================================================
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_SIGINT = 130
EXIT_SIGPIPE = 141  # stdout's reader went away (`| head`): stop quietly, as a shell tool does
EXIT_SIGTERM = 143


class SoftmaxlabError(Exception):
    """The base class: a problem the user can fix; the message says what and how."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(SoftmaxlabError, ValueError):
    """An option or argument value that is not allowed (names the value and the allowed range)."""


class DataError(SoftmaxlabError, ValueError):
    """A dataset that cannot be used: damaged, wrong, missing or not matching the model."""


class RunFolderError(SoftmaxlabError, ValueError):
    """A run folder that cannot be used; the message names the folder or file and what is wrong."""


class ImageInputError(SoftmaxlabError, ValueError):
    """An image file of the user's that cannot be used; the message names the file."""


class SystemFault(SoftmaxlabError, OSError):
    """The operating system refused (full disk, read-only file system, no permission, ...) on a
    path of the user's; the message names the path and the reason."""


class DistributedError(SoftmaxlabError, RuntimeError):
    """A process of a distributed job cannot reach the others (one died, hangs or is
    unreachable); the message names the rank and the cause."""


class TrainingDiverged(SoftmaxlabError, ArithmeticError):
    """Training produced a non-finite loss or non-finite parameters in epoch ``epoch`` (1-based)."""

    exit_code = EXIT_DIVERGED

    def __init__(self, message: str, epoch: int | None = None) -> None:
        super().__init__(message)
        self.epoch = epoch


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (handled like Ctrl-C)."""


# what to do about an OSError, by its errno
_HINTS = {
    errno.ENOSPC: "free some space on that disk, or choose a folder on another one",
    errno.EDQUOT: "free some space within your quota, or choose a folder on another disk",
    errno.EROFS: "the file system is read-only: choose a folder on a writable one",
    errno.EACCES: "you have no permission there: choose a folder you can write to",
    errno.EPERM: "you have no permission there: choose a folder you can write to",
    errno.ENOENT: "a folder on the way is missing: it was removed or moved meanwhile",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "that path is a folder, not a file: choose another path",
}


def os_fault(path, error: OSError, doing: str = "write", hint: str | None = None) -> SystemFault:
    """A SystemFault for the OSError ``error`` raised while trying to ``doing`` ``path``."""
    reason = error.strerror or str(error)
    hint = hint or _HINTS.get(error.errno, "check the path and try again")
    return SystemFault(f"cannot {doing} {path}: {reason}; {hint}")
