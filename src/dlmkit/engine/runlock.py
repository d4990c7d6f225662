"""One writer per run folder: an OS file lock on ``RUN/.lock``.

``flock`` belongs to the open file, so the kernel drops it when the process ends however it
ends (SIGKILL included): a killed run never leaves a stale lock, and ``--resume`` just works.
The file itself stays (it holds the pid of the last holder, for the error message).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from dlmkit.errors import DlmError

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive, non-blocking lock on a run folder, held until :meth:`release` or exit."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._file: IO[str] | None = None

    def acquire(self) -> "RunLock":
        """Take the lock; a :class:`DlmError` when another process holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        f = open(self.folder / LOCK_NAME, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise DlmError(f"{self.folder} is in use by another dlm process{who}: wait for it to end, or choose another output folder") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the lock
            self._file = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
