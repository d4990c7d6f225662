"""What a generation is conditioned on: nothing, token spans at positions, a prefix per row, or source rows.

A kind takes the prompt types its sampler understands: every kind takes :class:`Unconditional`
(except the seq2seq kinds), :class:`Spans` (the AR kind a prefix only) and :class:`Prefixes`; the
seq2seq kinds (``diffuseq``, ``dlm_one``) and the AR baseline trained on pairs take :class:`SourceRows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch
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
class Prefixes:
    """One prefix of token ids per generated row (of any lengths): row ``i`` continues ``rows[i]``."""

    rows: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class PrefixRows(Condition):
    """A prefix condition with one prefix per batch row (all of one length).

    To the samplers it looks like a :class:`Condition` on positions ``0..P-1`` (checks and
    masks use the first row); ``apply`` writes each row's own prefix. A sampler that does not
    call ``apply`` ignores the other rows' prefixes: :func:`dlmkit.generate.generate` checks.
    """

    rows: tuple[tuple[int, ...], ...] = ()

    def apply(self, x: Tensor) -> Tensor:
        if x.shape[0] != len(self.rows):
            return super().apply(x)
        x = x.clone()
        x[:, : len(self.positions)] = torch.tensor(self.rows, dtype=x.dtype, device=x.device)
        return x


@dataclass(frozen=True)
class SourceRows:
    """Framed ``src sep ...`` rows [N, L] (:func:`dlmkit.data.seq2seq_blocks.frame_rows`): one
    generated target per row."""

    rows: Tensor


Prompt = Union[Unconditional, Spans, Prefixes, SourceRows]
