"""Block diffusion (BD3-LM, Arriola et al. 2025): autoregressive over blocks, masked diffusion within.

A sequence of L tokens is cut into L / B blocks of B tokens and -log p(x) = sum_b -log p(x^b | x^<b).
Each term is bounded by the masked-diffusion NELBO of block b with the previous blocks clean, so a
denoiser here is a :data:`BlockNllFn`: it scores every block at once, block b seeing its own noised
tokens and the clean tokens of the blocks before it. The network computes that in one pass over
``[x_t ; x0]`` (2L positions) with :func:`block_diffusion_mask`. B = 1 is the autoregressive
factorisation; B = L is MDLM.

Since the bound is a sum of one integral over the noise level per block, the blocks may share one
noise level (the sum of the integrals is the integral of the sum): the likelihood estimators of
:mod:`dlmkit.diffusion.likelihood` then apply unchanged (:func:`block_point`). Training draws an
independent time per block (:func:`block_times`), optionally clipped to a range of mask rates (the
paper's clipped schedule, which lowers the variance of the training loss; the clipped loss is not
the NELBO, so the bound reported by ``nll`` always integrates the whole range).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from dlmkit.diffusion.likelihood import BoundEstimate, PointFn
from dlmkit.diffusion.schedules import NoiseSchedule
from dlmkit.errors import DlmError

BlockNllFn = Callable[[Tensor, Tensor], Tensor]
"""(x_t [B, L], x0 [B, L]) -> -log p_theta(x0^i | x_t in block(i), x0 before block(i)) at the masked
positions of x_t, 0 at the others: [B, L]."""


def check_blocks(length: int, block_size: int) -> int:
    """The number of blocks; a DlmError unless ``block_size`` >= 1 divides ``length``."""
    if block_size < 1 or length % block_size:
        raise DlmError(f"block size {block_size} must be >= 1 and divide the sequence length {length}")
    return length // block_size


def block_index(length: int, block_size: int, device: torch.device | str | None = None) -> Tensor:
    """The block of every position [L]; a last block may be shorter (scoring and sampling allow it)."""
    if block_size < 1:
        raise DlmError(f"block size must be >= 1, got {block_size}")
    return torch.arange(length, device=device) // block_size


def block_causal_mask(length: int, block_size: int, device: torch.device | str | None = None) -> Tensor:
    """Bool [L, L], True where query i may attend to key j: block(j) <= block(i).

    The clean copy's attention in training, and the sampler's over [clean blocks ; current block]."""
    blk = block_index(length, block_size, device)
    return blk[:, None] >= blk[None, :]


def block_diffusion_mask(length: int, block_size: int, device: torch.device | str | None = None) -> Tensor:
    """Bool [2L, 2L] over the training input ``[x_t ; x0]``, True where query may attend to key.

    A noised query attends to the noised tokens of its own block and to the clean tokens of earlier
    blocks; a clean query attends to the clean tokens of its own and earlier blocks (block-causal),
    never to noised ones."""
    blk = block_index(length, block_size, device)
    q, k = blk[:, None], blk[None, :]
    noised_rows = torch.cat([q == k, q > k], dim=1)
    clean_rows = torch.cat([torch.zeros_like(q == k), q >= k], dim=1)
    return torch.cat([noised_rows, clean_rows], dim=0)


def block_times(
    batch: int, n_blocks: int, generator: torch.Generator, *, antithetic: bool = True, lo: float = 1e-3, hi: float = 1.0,
) -> Tensor:
    """Diffusion times [batch, n_blocks] in float64, one per block, uniform on [lo, hi].

    ``antithetic`` spreads the batch x blocks draws over [0, 1) as one stratified set (one shared
    offset). lo > 0 keeps the loss weight finite (MDLM's t_min); a narrower [lo, hi] is the clipped
    schedule."""
    if not 0.0 < lo < hi <= 1.0:
        raise DlmError(f"block diffusion times need 0 < lo < hi <= 1, got [{lo}, {hi}]")
    n = batch * n_blocks
    u = torch.rand(n if not antithetic else 1, generator=generator, dtype=torch.float64, device=generator.device)
    if antithetic:
        u = (u + torch.arange(n, dtype=torch.float64, device=u.device) / n) % 1.0
    return (lo + (hi - lo) * u).view(batch, n_blocks)


def mask_tokens(x0: Tensor, sigma: Tensor, mask_id: int, generator: torch.Generator, clean_mask: Tensor | None = None) -> Tensor:
    """x_t: each position of x0 masked independently with probability 1 - e^-sigma (sigma [B, L] or [B]),
    never at ``clean_mask`` positions."""
    sigma = sigma if sigma.dim() == 2 else sigma[:, None].expand(x0.shape)
    u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
    masked = u < -torch.expm1(-sigma.double())
    if clean_mask is not None:
        masked &= ~clean_mask
    return torch.where(masked, mask_id, x0)


def block_loss(
    nll_fn: BlockNllFn, schedule: NoiseSchedule, x0: Tensor, t: Tensor, block_size: int, mask_id: int,
    generator: torch.Generator,
) -> Tensor:
    """The NELBO integrand per sequence [B], each block at its own time ``t`` [B, L / B]:
    sum_b sigma_bar'(t_b) / (e^sigma_bar(t_b) - 1) * (masked NLL of block b)."""
    check_blocks(x0.shape[1], block_size)
    sigma = schedule.total(t)
    weight = (schedule.rate(t) / torch.expm1(sigma)).repeat_interleave(block_size, dim=1)
    x_t = mask_tokens(x0, sigma.repeat_interleave(block_size, dim=1), mask_id, generator)
    nll = nll_fn(x_t, x0)
    return (weight.to(nll.dtype) * nll).sum(-1)


def block_point(nll_fn: BlockNllFn, mask_id: int, clean_mask: Tensor | None = None) -> PointFn:
    """PointFn for :func:`dlmkit.diffusion.likelihood.nelbo`: every block masked at the sequence's one
    noise level (``clean_mask`` positions kept), all blocks scored in one call."""
    def point(x0: Tensor, sigma: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x_t = mask_tokens(x0, sigma, mask_id, generator, clean_mask)
        rec = nll_fn(x_t, x0).sum(-1)
        return rec / torch.expm1(sigma).to(rec.dtype), rec
    return point


def block_count_nelbo(
    nll_fn: BlockNllFn, mask_id: int, x0: Tensor, block_size: int, *, generator: torch.Generator, n: int = 8,
    clean_mask: Tensor | None = None,
) -> BoundEstimate:
    """The block NELBO with the noise level integrated exactly, for a time-free denoiser.

    Per block with K free positions the bound is sum_{k=1}^{K} (1/k) E_{|m| = k}[sum_{i in m} -log p(x0^i
    | x0 of the block outside m, earlier blocks)] (see :func:`~dlmkit.diffusion.likelihood.masked_count_nelbo`);
    each draw takes, in every block, k from its stratum of U{1..K} and a random set of k free
    positions, weighted K / k, and scores all blocks in one call (the last block may be shorter).
    With B = 1 every draw is the autoregressive NLL exactly (standard error 0).
    """
    if n < 1:
        raise DlmError(f"need n >= 1, got n={n}")
    batch, length = x0.shape
    blk = block_index(length, block_size, x0.device).expand(batch, -1)
    free = torch.ones_like(x0, dtype=torch.bool) if clean_mask is None else ~clean_mask
    if (free.sum(-1) == 0).any():
        raise DlmError("every sequence needs at least one position to score")
    n_blocks = (length + block_size - 1) // block_size
    k_free = torch.zeros(batch, n_blocks, dtype=torch.long, device=x0.device).scatter_add_(1, blk, free.long())
    draws = []
    for j in range(n):
        v = (j + torch.rand(batch, n_blocks, generator=generator, dtype=torch.float64, device=x0.device)) / n
        k = ((v * k_free).floor().long().clamp(max=(k_free - 1).clamp(min=0)) + 1).gather(1, blk)  # per position
        keys = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device).masked_fill(~free, 2.0)
        rank = (blk * 3 + keys).argsort(-1).argsort(-1) - blk * block_size  # rank within the block
        masked = (rank < k) & free
        weight = k_free.gather(1, blk) / k
        nll = nll_fn(torch.where(masked, mask_id, x0), x0).double()
        draws.append((weight * nll).sum(-1))
    draws = torch.stack(draws)
    stderr = draws.std(0) / math.sqrt(n) if n > 1 else torch.full_like(draws[0], math.nan)
    return BoundEstimate(draws.mean(0), stderr, n)


def check_block_condition(clean_mask: Tensor, block_size: int) -> None:
    """The block bound is -log p(free | given) only when no given position lies in a block after the
    first block with a free position (earlier blocks never see later ones): a prefix, with infill in
    the block where the scored tokens start."""
    batch, length = clean_mask.shape
    blk = block_index(length, block_size, clean_mask.device).expand(batch, -1)
    first_free = torch.where(~clean_mask, blk, length).min(-1).values
    last_given = torch.where(clean_mask, blk, -1).max(-1).values
    if (last_given > first_free).any():
        raise DlmError("block diffusion conditions on earlier blocks only: the given positions must come before "
                       "the scored ones, or share their first block")
