"""Confidence-ordered masked sampling (MaskGIT-style): unmask the positions the denoiser is surest of.

At a step from t to s with m masked positions in a row, n = floor(m (alpha_s - alpha_t)/(1 - alpha_t)
+ 1/2) of them unmask (the ancestral step's expected count, rounded; the last step, alpha_s = 1,
unmasks all): the n whose confidence max_y p(y | x_t) (after temperature / top-p) is largest, ties
to the lower position. Each of them draws its value from p(. | x_t); the others stay masked.
Which positions move depends only on x_t, so the step is a product over positions given x_t and
its exact law enumerates like the ancestral step's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlmkit.sampling.categorical import gumbel
from dlmkit.sampling.masked_kernels import MaskedKernel, MaskedStep


class ConfidenceOrdered(MaskedKernel, name="confidence"):
    """Unmask the most confident masked positions, as many per step as the ancestral step expects."""

    def chosen(self, log_p: torch.Tensor, x: torch.Tensor, step: MaskedStep) -> torch.Tensor:
        """bool [B, L]: the positions this step unmasks."""
        masked = x == self.mask_id
        m = masked.sum(-1, keepdim=True).double()
        n = torch.floor(m * (step.alpha_s - step.alpha_t) / (1.0 - step.alpha_t) + 0.5).long()
        confidence = self.adjust(log_p).max(-1).values.masked_fill(~masked, -torch.inf)
        order = confidence.sort(dim=-1, descending=True, stable=True).indices  # masked first, most confident first
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(x.shape[-1], device=x.device).expand_as(order))
        return masked & (rank < n)

    def draw(self, log_p: torch.Tensor, x: torch.Tensor, step: MaskedStep, generator: torch.Generator) -> torch.Tensor:
        unmask = self.chosen(log_p, x, step)
        if not unmask.any():
            return x
        rows = self.adjust(log_p[unmask])
        x = x.clone()
        x[unmask] = (rows + gumbel(tuple(rows.shape), generator)).argmax(-1)
        return x

    def probs(self, log_p: torch.Tensor, x: torch.Tensor, step: MaskedStep) -> torch.Tensor:
        keep = F.one_hot(x, log_p.shape[-1]).double()
        return torch.where(self.chosen(log_p, x, step).unsqueeze(-1), self.adjust(log_p).exp(), keep)
