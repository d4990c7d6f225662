"""SEDD steps drawn as "stay or move, then where": the sampler's fast path.

Every SEDD step on the absorbing and uniform graphs gives position i a probability of keeping x^i
and, for y != x^i, probabilities proportional to max(0, a s_y + b), with s = exp(log score) and
per-row constants a, b.  So a step draws one float64 uniform per row to decide whether the token
moves, and a float64 Gumbel-max over V only for the rows that move: the same law as a categorical
draw over the whole [B, L, V] step probabilities (``discrete._sedd_step`` and ``categorical``,
which the exact enumeration still uses), at a fraction of the cost.  On the absorbing graph only
masked rows can move, so only they are read at all:
p_y = c s_y (y real), p_mask = max(0, 1 - c sum_y s_y), with c = e^dsigma - 1 (analytic),
dsigma (Euler), or p_mask = 0 (the final denoising step).  Arithmetic over [*, V] stays in the
score's dtype (float32 from a network); sums are accumulated in float64.
"""

from __future__ import annotations

import math

import torch

from dlmkit.diffusion.graphs import Absorbing, Graph, Uniform


def move_kernel(
    graph: Graph, x: torch.Tensor, log_score: torch.Tensor, predictor: str, sigma: float, dsigma: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows [M] flat indices into x, q [M, V] unnormalised move weights (0 at y = x^i), stay [M] float64).

    A row keeps its token with probability stay / (stay + sum q) and otherwise moves to y with
    probability q_y / sum q.  ``dsigma`` None is the final denoising step (Tweedie to sigma = 0).
    Rows not listed keep their token.
    """
    flat_x, flat = x.reshape(-1), log_score.reshape(-1, log_score.shape[-1])
    if isinstance(graph, Absorbing):
        rows = (flat_x == graph.mask_id).nonzero().squeeze(1)
        q = flat[rows].exp_()  # a copy of the masked rows only
        q[:, graph.mask_id] = 0.0
        total = q.sum(-1, dtype=torch.float64)
        if dsigma is None:
            return rows, q, torch.zeros_like(total)
        c = math.expm1(dsigma) if predictor == "analytic" else dsigma
        return rows, q, (1.0 - c * total).clamp_min(0.0)
    if isinstance(graph, Uniform):
        rows = torch.arange(flat_x.shape[0], device=x.device)
        q = flat.exp()
        own = flat_x.unsqueeze(-1)
        n = graph.vocab_size
        if predictor == "euler" and dsigma is not None:  # jump dsigma Q[x, y] s_y = dsigma s_y / V
            q.scatter_(-1, own, 0.0)
            return rows, q, (1.0 - dsigma / n * q.sum(-1, dtype=torch.float64)).clamp_min(0.0)
        # Tweedie over d: (e^d s_y + (1 - e^d)/V sum s) (1 - e^-d)/V for y != x; the stay factor is e^-d + (1 - e^-d)/V
        d = sigma if dsigma is None else dsigma
        total = q.sum(-1, keepdim=True, dtype=torch.float64)  # includes s_x = 1
        shift = (-math.expm1(d) / n) * total  # (1 - e^d)/V sum s, float64 [M, 1]
        stay = ((math.exp(d) + shift).clamp_min(0.0) * (math.exp(-d) - math.expm1(-d) / n)).squeeze(1)
        q.mul_(math.exp(d)).add_(shift.to(q.dtype)).clamp_(min=0.0).scatter_(-1, own, 0.0)
        return rows, q, stay  # common factor (1 - e^-d)/V dropped from q: applied to the move mass below
    raise NotImplementedError(type(graph).__name__)


def move_scale(graph: Graph, predictor: str, sigma: float, dsigma: float | None) -> float:
    """The factor dropped from q by ``move_kernel`` (move mass = factor * sum q)."""
    if isinstance(graph, Uniform):
        if predictor == "euler" and dsigma is not None:
            return dsigma / graph.vocab_size
        d = sigma if dsigma is None else dsigma
        return -math.expm1(-d) / graph.vocab_size
    if dsigma is None:
        return 1.0
    return math.expm1(dsigma) if predictor == "analytic" else dsigma


def draw_moves(
    graph: Graph, x: torch.Tensor, log_score: torch.Tensor, predictor: str, sigma: float, dsigma: float | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """One SEDD step (or the final denoising step) from x [B, L]: the new tokens [B, L]."""
    rows, q, stay = move_kernel(graph, x, log_score, predictor, sigma, dsigma)
    move = move_scale(graph, predictor, sigma, dsigma) * q.sum(-1, dtype=torch.float64)
    u = torch.rand(rows.shape[0], generator=generator, dtype=torch.float64, device=x.device)
    moving = u * (move + stay) < move
    if not moving.any():
        return x
    chosen = q[moving].double()
    noise = torch.rand(chosen.shape, generator=generator, dtype=torch.float64, device=x.device).clamp_min(1e-300)
    value = (chosen.log() - (-noise.log()).log()).argmax(-1)
    out = x.reshape(-1).clone()
    out[rows[moving]] = value
    return out.view_as(x)
