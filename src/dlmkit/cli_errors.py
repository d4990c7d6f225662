"""The error boundary of the ``dlm`` command: what a failure prints and the exit status.

* an expected failure (bad input, a bad config, a missing, foreign or unwritable file, a full
  disk) is one line ``error: ...`` and exit status 2;
* anything else is one line naming the exception, plus how to see the traceback, and status 1;
* with ``--debug`` the traceback is printed as well.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
import traceback
from typing import Any, Callable, NoReturn

from dlmkit.errors import DlmError

# OSErrors that come from the user's files and disks, not from a bug
_FILE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG, errno.EIO}
_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")  # how safetensors (Rust) reports an OSError
_ADVICE = {errno.ENOSPC: "free space on that disk or choose another folder (earlier checkpoints are kept)",
           errno.EDQUOT: "free space on that disk or choose another folder (earlier checkpoints are kept)",
           errno.EACCES: "choose a folder you can write to", errno.EPERM: "choose a folder you can write to",
           errno.EROFS: "choose a folder on a writable disk"}


class DlmArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``error: dlm CMD: ...`` (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def expected_message(exc: BaseException) -> str | None:
    """The one-line message of an expected failure, or None for one that is a bug."""
    if isinstance(exc, DlmError):
        return _one_line(str(exc))
    if isinstance(exc, OSError) and exc.errno in _FILE_ERRNOS:
        where = exc.filename if exc.filename is not None else "a file"
        advice = _ADVICE.get(exc.errno)
        return _one_line(f"{where}: {exc.strerror}" + (f"; {advice}" if advice else ""))
    if type(exc).__name__ == "SafetensorError" and (m := _OS_ERROR_IN_TEXT.search(str(exc))):
        code = int(m.group(1))
        if code in _FILE_ERRNOS:
            advice = _ADVICE.get(code)
            return _one_line(f"cannot write or read a safetensors file: {exc}" + (f"; {advice}" if advice else ""))
    return None


def run_guarded(func: Callable[[Any], Any], args: Any, *, debug: bool = False) -> int:
    """Run ``func(args)`` inside the boundary; the exit status."""
    try:
        func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one place that turns any failure into an exit status
        if debug:
            traceback.print_exc()
        message = expected_message(exc)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            return 2
        first = _one_line(str(exc))
        print(f"error: unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)"
              if not debug else f"error: unexpected {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    return 0
