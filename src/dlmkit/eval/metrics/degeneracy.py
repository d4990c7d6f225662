"""Degenerate outputs: the fractions of empty outputs and of outputs dominated by one token.

A collapsed model (one token everywhere, or nothing at all) shows here directly, not only as a
low BLEU. Outputs are split on whitespace; an output of at least two tokens is "repeat" when
one token makes up more than half of it.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence


def degeneracy(outputs: Sequence[str]) -> dict[str, float]:
    """``{"empty": fraction with no token, "repeat": fraction with one token > 50% of it}``
    (both 0 for no outputs)."""
    n = max(1, len(outputs))
    toks = [o.split() for o in outputs]
    return {"empty": sum(not t for t in toks) / n,
            "repeat": sum(len(t) >= 2 and Counter(t).most_common(1)[0][1] > len(t) / 2 for t in toks) / n}
