"""Categorical draws in float64 and logit filtering shared by every sampler.

Low-precision Gumbel or multinomial draws truncate the tails of the distribution, which lowers
diversity and makes generative perplexity look better than it is; every sampler here draws in
float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dlmkit.errors import DlmError


def sample_categorical(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one index per row of ``probs`` [..., V] (unnormalised is fine) by inverse CDF in float64."""
    p = probs.double()
    cdf = p.cumsum(dim=-1)
    u = torch.rand(p.shape[:-1] + (1,), dtype=torch.float64, device=p.device, generator=generator) * cdf[..., -1:]
    idx = torch.searchsorted(cdf, u, right=True).squeeze(-1)
    return idx.clamp_(max=p.shape[-1] - 1)


def top_k_top_p(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Set to -inf the logits outside the top-k and outside the smallest set of mass >= top_p."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the mass before it already reaches top_p (the top token always stays)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def gumbel(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise in float64."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device).clamp_min(1e-300)
    return -torch.log(-torch.log(u))


def categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of unnormalised non-negative ``probs`` [..., V] (Gumbel-max, float64)."""
    return (torch.log(probs.double()) + gumbel(tuple(probs.shape), generator)).argmax(-1)


def adjust_log_probs(log_p: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature then nucleus truncation of log p(x0 | x_t) [..., V], renormalised, in float64.

    Nucleus keeps the most likely tokens while the mass before them is < top_p.
    """
    if temperature <= 0.0 or not 0.0 < top_p <= 1.0:
        raise DlmError(f"need temperature > 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    log_p = log_p.double()
    if temperature != 1.0:
        log_p = torch.log_softmax(log_p / temperature, dim=-1)
    if top_p < 1.0:
        sorted_lp, order = log_p.sort(dim=-1, descending=True)
        probs = sorted_lp.exp()
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        log_p = torch.log_softmax(log_p.masked_fill(drop, -torch.inf), dim=-1)
    return log_p
