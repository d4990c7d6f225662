"""What a generation is conditioned on: nothing, token spans at positions, or source rows.

A kind takes the prompt types its sampler understands: every kind takes :class:`Unconditional`
(except the seq2seq kinds) and :class:`Spans` (the AR kind a prefix only); the seq2seq kinds
(``diffuseq``, ``dlm_one``) and the AR baseline trained on pairs take :class:`SourceRows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

from torch import Tensor

from dlmkit.errors import DlmError
from dlmkit.sampling.conditioning import Condition


@dataclass(frozen=True)
class Unconditional:
    """Sample from the model's own distribution."""


@dataclass(frozen=True)
class Spans:
    """Token ids held fixed at positions (a :class:`Condition`; a subclass may differ per row)."""

    condition: Condition

    @staticmethod
    def from_text(tokenizer: Any, length: int, prefix: str | None = None, suffix: str | None = None,
                  infill: Sequence[tuple[int, str]] = ()) -> "Spans | Unconditional":
        """Tokenise text conditions and place them: prefix at the start, suffix at the end, infill
        spans from their token position; :class:`Unconditional` when nothing is held fixed."""
        pre = tokenizer.encode(prefix) if prefix else []
        suf = tokenizer.encode(suffix) if suffix else []
        spans = [(pos, tokenizer.encode(text)) for pos, text in infill]
        held = len(pre) + len(suf) + sum(len(ids) for _, ids in spans)
        if held == 0:
            return Unconditional()
        if held > length:
            raise DlmError(f"the condition holds {held} tokens but the sample has only {length}")
        for pos, ids in spans:
            if pos + len(ids) > length:
                raise DlmError(f"infill at token {pos} ({len(ids)} tokens) runs past the sample length {length}")
        return Spans(Condition.from_spans(length, pre, suf, spans))


@dataclass(frozen=True)
class SourceRows:
    """Framed ``src sep ...`` rows [N, L] (:func:`dlmkit.data.seq2seq_blocks.frame_rows`): one
    generated target per row."""

    rows: Tensor


Prompt = Union[Unconditional, Spans, SourceRows]
