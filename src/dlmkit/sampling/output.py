"""What every sampler returns: the tokens, the network calls it took and (for continuous samplers)
the final embeddings; :func:`dlmkit.generate.generate` adds the seconds."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class SampleOutput:
    """Sampled token ids [B, L], network evaluations, seconds, final embeddings [B, L, D] or None."""

    tokens: Tensor
    nfe: int
    seconds: float = 0.0
    embeddings: Tensor | None = None

    @property
    def token_ids(self) -> Tensor:
        """The tokens (the continuous samplers' name for them)."""
        return self.tokens
