"""Degenerate outputs of a generation run (``dlm eval degeneracy``).

Reads one hypothesis file as ``dlm eval seq2seq --hyp`` does (DiffuSeq output records or one
output a line) and reports :func:`dlmkit.eval.metrics.degeneracy.degeneracy` on its outputs.
"""

from __future__ import annotations

from typing import Any

from dlmkit.eval.metrics.degeneracy import degeneracy
from dlmkit.eval.tasks.seq2seq import read_output_file


def run_task(args: Any) -> dict[str, Any]:
    """``{"degeneracy": {"hyp", "n", "empty", "repeat"}}`` for the file ``args.hyp``."""
    outputs = read_output_file(args.hyp).outputs
    return {"degeneracy": {"hyp": str(args.hyp), "n": len(outputs), **degeneracy(outputs)}}


def render_result(result: dict[str, Any]) -> str:
    d = result["degeneracy"]
    return f"{d['hyp']}: {d['n']} outputs, empty {d['empty']:.4f}, one token > 50% {d['repeat']:.4f}"
