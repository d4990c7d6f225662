"""The autoregressive baseline: the shared backbone in causal mode, trained by next-token loss.

Each block is scored as a whole: the input is the block shifted right behind an end-of-text
token, so all L tokens are predicted (the first one from the document boundary alone). Its
per-token NLL is then directly comparable with a diffusion model's bound on the same blocks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlmkit.errors import DlmError
from dlmkit.methods.base import PREFIX, UNCONDITIONAL, Method, SampleOutput, register
from dlmkit.sampling.autoregressive import generate


@register
class AutoRegressive(Method):
    kind = "ar"
    causal = True
    time_conditioned = False
    nll_is_bound = False
    prompts = frozenset({UNCONDITIONAL, PREFIX})  # conditions on a prefix only
    extra_options = ("temperature", "top_k", "top_p", "use_cache")

    def _shifted(self, x0: Tensor) -> Tensor:
        bos = torch.full_like(x0[:, :1], self.specials.eos)
        return torch.cat([bos, x0[:, :-1]], dim=1)

    def loss(self, net: nn.Module, x0: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        logits = net(self._shifted(x0))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x0.reshape(-1))
        return loss, {}

    @torch.no_grad()
    def nll(
        self,
        net: nn.Module,
        x0: Tensor,
        *,
        generator: torch.Generator,
        n_samples: int = 1,
        clean_mask: Tensor | None = None,
        estimator: str = "mc",
    ) -> tuple[Tensor, Tensor]:
        logits = net(self._shifted(x0))
        # flat [B L, V] rows: cross_entropy over a [B, V, L] view is several times slower
        per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x0.reshape(-1), reduction="none").view_as(x0)
        if clean_mask is not None:
            starts = (~clean_mask).float().argmax(dim=1, keepdim=True)
            positions = torch.arange(x0.shape[1], device=x0.device)[None]
            if not torch.equal(clean_mask, positions < starts):
                raise DlmError("the AR model conditions only on a prefix: clean positions must come first")
            per_token = per_token.masked_fill(clean_mask, 0.0)
        nll = per_token.sum(dim=1)
        return nll, torch.zeros_like(nll)

    @torch.no_grad()
    def sample(
        self,
        net: nn.Module,
        batch: int,
        length: int,
        *,
        steps: int = 0,
        generator: torch.Generator,
        condition: Any = None,
        **options: Any,
    ) -> SampleOutput:
        """Left-to-right generation after an end-of-text token; ``steps`` is ignored (one per token).

        A condition for the AR model can only be a prefix: its first ``len(prefix)`` positions.
        """
        device = next(net.parameters()).device
        prompt = torch.full((batch, 1), self.specials.eos, dtype=torch.long, device=device)
        if condition is not None:
            held = sorted(zip(condition.positions, condition.token_ids))
            if [p for p, _ in held] != list(range(len(held))):
                raise DlmError("the AR model can only be conditioned on a prefix (no suffix or infill)")
            prefix = torch.tensor([t for _, t in held], dtype=torch.long, device=device)
            prompt = torch.cat([prompt, prefix.expand(batch, -1)], dim=1)
        out = generate(net, prompt, length + 1 - prompt.shape[1], generator=generator, **options)
        return SampleOutput(tokens=out[:, 1:], nfe=length + 1 - prompt.shape[1])
