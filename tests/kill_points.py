"""Helpers of the SIGKILL-then-resume tests: count a run's metrics lines and wait, with a live
process and a deadline, until its log reaches a given length (the point to kill it at)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def count_lines(path: Path) -> int:
    """Complete lines of a log (0 when it does not exist yet)."""
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def wait_for_lines(proc: subprocess.Popen, path: Path, target: int, timeout: float = 120.0) -> None:
    """Poll until ``path`` holds ``target`` lines; fail with the process's stderr if it exits first."""
    deadline = time.time() + timeout
    while count_lines(path) < target:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.0005)
