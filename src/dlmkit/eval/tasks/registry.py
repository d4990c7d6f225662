"""The registry of evaluation tasks: each task's command, options, run and renderings.

A task is registered once (:mod:`dlmkit.eval.tasks`) with

- its command (``("eval", "gen")``, ``("bench", "latency")``) and its argparse options;
- ``run``: the function that takes the parsed options and returns the ``--json`` object;
- ``render``: the human text the command prints for that object;
- for the report (``dlm eval report``): the key its results carry in the JSON, how one result
  is recognised under that key, and ``section``: the markdown (and plots) for all its results.

The CLI builds its ``eval``/``bench`` subcommands from :data:`TASKS` and the report iterates it,
so a new task is its own module plus one :func:`register` call. ``run``, ``render`` and
``section`` are :func:`dlmkit.registry.lazy` functions, imported when called: parsing a command
line must not import torch or the models.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dlmkit.errors import DlmError

# (markdown lines, plot paths) of one report section
Section = tuple[list[str], list[str]]


@dataclass(frozen=True)
class Task:
    """One evaluation task. ``entry`` is None when a result is a list of rows under ``key``,
    else the field that marks one result object (``"model"``, ``"rows"``); ``rank`` orders the
    report's sections; ``section`` None keeps the task out of the report."""

    key: str
    command: tuple[str, str]
    help: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict[str, Any]]
    render: Callable[[dict[str, Any]], str]
    section: Callable[[list[dict[str, Any]], Path], Section] | None = None
    entry: str | None = None
    rank: int = 0


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` (its command must be new)."""
    if any(t.command == task.command for t in TASKS.values()) or task.key in TASKS:
        raise ValueError(f"task {task.key} ({' '.join(task.command)}) is registered twice")
    TASKS[task.key] = task
    return task


def reported() -> list[Task]:
    """The tasks with a report section, in registration order."""
    return [t for t in TASKS.values() if t.section is not None]


def ints(text: str) -> list[int]:
    """The integers of a comma-separated option value (``"32,128"``)."""
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise DlmError(f"'{text}' is not a comma-separated list of integers") from None
