"""One markdown report from the JSON results of the evaluation commands (``dlm eval report``).

Inputs are JSON files written by ``dlm eval ppl|gen|mauve|harness`` and ``dlm bench latency``
with ``--json`` (the file may hold the command's whole standard output: its last JSON line is
read), or the combined JSON of ``benchmarks/eval_suite.py``. Results are found by the keys of
the registered tasks (:mod:`dlmkit.eval.tasks`: ``ppl``, ``gen``, ``mauve``, ``harness``,
``latency``) at any depth, so several files of the same kind are merged. The report has one
section per task with results, rendered by the task (a table, and PNG plots written beside the
markdown file: generative perplexity (and unigram entropy) vs sampling steps, latency vs steps,
MAUVE per model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from dlmkit.errors import DlmError
from dlmkit.eval.tasks import reported
from dlmkit.io import split_lines, write_text


def read_result(path: str | Path) -> dict[str, Any]:
    """A JSON file, or the last JSON line of a command's saved output."""
    path = Path(path)
    if not path.is_file():
        raise DlmError(f"{path}: no such results file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DlmError(f"{path}: not a text file (give the JSON written by an eval or bench command with --json)") from None
    try:
        return json.loads(text)
    except ValueError:
        for line in reversed(split_lines(text.strip())):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    raise DlmError(f"{path}: holds no JSON object")


def collect(obj: Any, found: dict[str, list[Any]] | None = None) -> dict[str, list[Any]]:
    """Gather result entries by task key from a parsed JSON tree."""
    tasks = {t.key: t for t in reported()}
    found = found if found is not None else {k: [] for k in tasks}
    if isinstance(obj, dict):
        for key, value in obj.items():
            task = tasks.get(key)
            if task is not None and task.entry is None and isinstance(value, list):
                found[key] += [v for v in value if isinstance(v, dict)]
            elif task is not None and task.entry is not None and isinstance(value, dict) and task.entry in value:
                found[key].append(value)
            elif task is not None and task.entry is not None and isinstance(value, list):
                for v in value:
                    collect({key: v}, found)
            elif isinstance(value, (dict, list)):
                collect(value, found)
    elif isinstance(obj, list):
        for v in obj:
            collect(v, found)
    return found


def write_report(results: Sequence[str | Path | dict[str, Any]], out: str | Path, *, title: str = "dlmkit evaluation report", notes: str = "") -> dict[str, Any]:
    """Write ``out`` (markdown) and its PNG plots; returns the paths and what was found."""
    tasks = reported()
    found: dict[str, list[Any]] = {t.key: [] for t in tasks}
    for r in results:
        collect(r if isinstance(r, dict) else read_result(r), found)
    if not any(found.values()):
        raise DlmError(f"no evaluation results ({', '.join(found)}) in the given files")
    out = Path(out)
    stem = out.with_suffix("")
    plots: list[str] = []
    parts = [f"# {title}", ""]
    if notes:
        parts += [notes, ""]
    for task in sorted(tasks, key=lambda t: t.rank):
        if found[task.key]:
            lines, pngs = task.section(found[task.key], stem)
            parts += lines
            plots += pngs
    write_text(out, "\n".join(parts))
    return {"report": str(out), "plots": plots, "found": {k: len(v) for k, v in found.items()}}
