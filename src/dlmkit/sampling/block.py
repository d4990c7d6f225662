"""Block diffusion sampling: blocks left to right, a registered masked kernel within each block.

The denoiser is a :data:`BlockDenoiseFn`: given ``x`` [B, end] whose positions from the last block
start ((end - 1) // block_size * block_size) on are the block being sampled and whose earlier
positions are finished (clean) blocks, it returns SUBS log p(x0 | x) for the block, [B, n, V]. A
last block may be shorter than ``block_size``. The sampler only ever extends the finished part,
so a denoiser may cache it exactly (the method's KV cache does); this loop never knows. Within a
block the steps are the masked sampler's (:mod:`dlmkit.sampling.masked_kernels`) from all-mask to
clean; ``cache=True`` reuses the last output while the block did not change (exact for a time-free
denoiser, as in :func:`~dlmkit.sampling.discrete.sample_masked`). Held tokens (a condition) are
written before a block's first step and after each step, so a prefix conditions every block after
it and infill spans condition their own block and the later ones (never the earlier ones).
:func:`block_output_distribution` pushes the exact law through the same plan and kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from dlmkit.diffusion.schedules import NoiseSchedule
from dlmkit.errors import DlmError
from dlmkit.sampling.discrete import SampleResult, all_sequences, push_distribution, start_distribution
from dlmkit.sampling.masked_kernels import get_masked_kernel

if TYPE_CHECKING:
    from dlmkit.sampling.conditioning import Condition

BlockDenoiseFn = Callable[[Tensor], Tensor]
"""x [B, end] (finished blocks, then the current block) -> log p(x0 | x) of the current block [B, n, V]."""


def sample_blocks(
    denoise_fn: BlockDenoiseFn, mask_id: int, vocab_size: int, schedule: NoiseSchedule, batch: int, length: int,
    block_size: int, steps: int, *, generator: torch.Generator, condition: Condition | None = None,
    kernel: str = "ancestral", cache: bool = False, temperature: float = 1.0, top_p: float = 1.0,
    stop_id: int | None = None, fill_id: int | None = None,
) -> SampleResult:
    """Draw [batch, length] tokens, ``steps`` kernel steps per block; tokens and NFE (denoiser calls).

    ``stop_id``: once every row holds a generated ``stop_id`` the remaining blocks are not sampled,
    and every position after a row's first generated ``stop_id`` becomes ``fill_id``, so outputs
    have any length up to ``length``. A block whose positions are all held costs no call.
    """
    if block_size < 1:
        raise DlmError(f"block size must be >= 1, got {block_size}")
    step_kernel = get_masked_kernel(kernel, mask_id, temperature=temperature, top_p=top_p)
    plan = step_kernel.plan(schedule, steps)
    if condition is not None:
        condition.check(length, vocab_size, mask_id)
    device = generator.device
    x = torch.full((batch, length), mask_id, dtype=torch.long, device=device)
    held = torch.zeros(length, dtype=torch.bool, device=device)
    if condition is not None:
        x, held = condition.apply(x), condition.mask(length).to(device)
    nfe = 0
    for start in range(0, length, block_size):
        end = min(start + block_size, length)
        last_x, log_p = None, None
        for step in plan:
            block = x[:, start:end]
            if not (block == mask_id).any():
                break
            if not (cache and last_x is not None and torch.equal(block, last_x)):
                log_p = denoise_fn(x[:, :end])
                nfe, last_x = nfe + 1, block
            new = step_kernel.draw(log_p, block, step, generator)
            if new is not block:
                x = x.clone()
                x[:, start:end] = new
                x = x if condition is None else condition.apply(x)
        if stop_id is not None and bool(((x[:, :end] == stop_id) & ~held[:end]).any(-1).all()):
            break
    if stop_id is not None:
        x = _cut_after_stop(x, held, stop_id, mask_id if fill_id is None else fill_id)
    return SampleResult(x, nfe)


def _cut_after_stop(x: Tensor, held: Tensor, stop_id: int, fill_id: int) -> Tensor:
    """``fill_id`` after each row's first generated ``stop_id`` (and over blocks never sampled)."""
    stops = (x == stop_id) & ~held
    first = torch.where(stops.any(-1), stops.float().argmax(-1), x.shape[1])
    after = torch.arange(x.shape[1], device=x.device)[None] > first[:, None]
    return x.masked_fill(after, fill_id)


def block_output_distribution(
    denoise_fn: BlockDenoiseFn, mask_id: int, vocab_size: int, schedule: NoiseSchedule, length: int, block_size: int,
    steps: int, *, condition: Condition | None = None, kernel: str = "ancestral", temperature: float = 1.0,
    top_p: float = 1.0,
) -> Tensor:
    """Exact distribution [V^L] of :func:`sample_blocks`' output (no stop), by enumerating all sequences."""
    step_kernel = get_masked_kernel(kernel, mask_id, temperature=temperature, top_p=top_p)
    states = all_sequences(vocab_size, length)
    dist = start_distribution(states, (states == mask_id).all(-1).double(), vocab_size, condition)
    keep = torch.nn.functional.one_hot(states, vocab_size).double()
    for start in range(0, length, block_size):
        end = min(start + block_size, length)
        for step in step_kernel.plan(schedule, steps):
            probs = keep.clone()
            probs[:, start:end] = step_kernel.probs(denoise_fn(states[:, :end]), states[:, start:end], step)
            dist = push_distribution(dist, states, probs, condition)
    return dist
