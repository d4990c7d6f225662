"""Block diffusion (BD3-LM, Arriola et al. 2025): kind ``bd3lm``, autoregressive over blocks of
``diffusion.block_size`` tokens and masked diffusion (SUBS, time-free as in MDLM) within a block.

Training scores every block in one pass over ``[x_t ; x0]`` (2L positions, both copies at
positions 0..L-1) with the block-diffusion attention mask: a noised block attends to itself and to
the clean earlier blocks, the clean copy attends block-causally. Each block draws its own time,
optionally clipped to ``[diffusion.clip_min, diffusion.clip_max]`` (the paper's clipped schedule).
Sampling goes block by block; the finished blocks' keys and values are cached exactly (they are
clean, so they never change), which ``use_cache=False`` turns off (the whole prefix recomputed at
every call; the same samples). Block size 1 is an AR model; block size = the context is MDLM.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlmkit.diffusion.block import (
    block_causal_mask, block_count_nelbo, block_diffusion_mask, block_loss, block_point, block_times,
    check_block_condition, check_blocks,
)
from dlmkit.diffusion.likelihood import nelbo
from dlmkit.diffusion.masked import subs_log_probs
from dlmkit.diffusion.schedules import schedule_from_options
from dlmkit.errors import DlmError
from dlmkit.methods.base import Method, SampleOutput, register
from dlmkit.methods.discrete_common import check_sampler
from dlmkit.networks.transformer import BackboneConfig, Transformer
from dlmkit.sampling.block import sample_blocks
from dlmkit.sampling.masked_kernels import MASKED_KERNELS


def samplers() -> tuple[str, ...]:
    """``cached`` (ancestral, network skipped while the block did not change) and every masked kernel."""
    return ("cached",) + tuple(MASKED_KERNELS)


def masked_position_nll(logits: Tensor, x0: Tensor, x_t: Tensor, mask_id: int) -> Tensor:
    """SUBS -log p(x0^i | .) at the masked positions of ``x_t``, 0 elsewhere: [B, L] (masked rows only)."""
    masked = x_t == mask_id
    rows = logits[masked].float()
    rows[:, mask_id] = -torch.inf
    out = torch.zeros(x0.shape, dtype=rows.dtype, device=rows.device)
    out[masked] = F.cross_entropy(rows, x0[masked], reduction="none")
    return out


class CachedBlocks:
    """The sampler's :data:`~dlmkit.sampling.block.BlockDenoiseFn` with an exact KV cache of the
    finished blocks: a call commits the finished positions not yet cached (block-causally, as the
    clean copy attends in training), then runs the current block alone against the cache."""

    def __init__(self, net: Transformer, batch: int, block_size: int, mask_id: int):
        self.net, self.block_size, self.mask_id = net, block_size, mask_id
        self.cache = net.new_cache(batch)

    def __call__(self, x: Tensor) -> Tensor:
        done, cached = (x.shape[1] - 1) // self.block_size * self.block_size, self.cache.length
        if done > cached:
            mask = block_causal_mask(done, self.block_size, x.device)[cached:done]
            self.net(x[:, cached:done], cache=self.cache, attn_mask=None if done - cached == self.block_size else mask)
        block = x[:, done:]
        logits = self.net(block, cache=self.cache)
        self.cache.length = done  # the noised block is never kept
        return subs_log_probs(logits, block, self.mask_id)


@register
class BlockDiffusion(Method):
    kind = "bd3lm"
    time_conditioned = False
    extra_options = ("sampler", "temperature", "top_p", "use_cache", "stop_at_eos")
    instead = {"denoiser": "bd3lm has no one-pass denoiser of a whole sequence: its blocks are denoised left to right "
                           "(score with nll, generate with sample)"}

    def __init__(self, vocab_size: int, specials: Any, options: dict[str, Any] | None = None):
        super().__init__(vocab_size, specials, options)
        self.schedule = schedule_from_options(self.options, "loglinear")
        self.mask_id = specials.mask
        self.block_size = int(self.options.get("block_size", 16))
        self.clip = (float(self.options.get("clip_min", 1e-3)), float(self.options.get("clip_max", 1.0)))
        if not 0.0 < self.clip[0] < self.clip[1] <= 1.0:
            raise DlmError(f"diffusion.clip_min={self.clip[0]} and clip_max={self.clip[1]} need 0 < clip_min < clip_max <= 1")

    def build_network(self, cfg: BackboneConfig) -> nn.Module:
        try:
            check_blocks(cfg.seq_len, self.block_size)
        except DlmError:
            raise DlmError(f"diffusion.block_size={self.block_size} must divide model.seq_len={cfg.seq_len}") from None
        return Transformer(cfg)

    def block_nll(self, net: nn.Module):
        """:data:`~dlmkit.diffusion.block.BlockNllFn` of the network: one pass over ``[x_t ; x0]``."""
        def nll_fn(x_t: Tensor, x0: Tensor) -> Tensor:
            length = x0.shape[1]
            mask = block_diffusion_mask(length, self.block_size, x0.device)
            positions = torch.arange(length, device=x0.device).repeat(2)
            logits = net(torch.cat([x_t, x0], dim=1), attn_mask=mask, positions=positions)[:, :length]
            return masked_position_nll(logits, x0, x_t, self.mask_id)
        return nll_fn

    def loss(self, net: nn.Module, x0: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        mode = self.options.get("t_sampling", "antithetic")
        if mode not in ("antithetic", "uniform"):
            raise DlmError(f"unknown diffusion.t_sampling '{mode}' (antithetic, uniform)")
        n_blocks = check_blocks(x0.shape[1], self.block_size)
        t = block_times(x0.shape[0], n_blocks, generator, antithetic=mode == "antithetic", lo=self.clip[0], hi=self.clip[1])
        per_seq = block_loss(self.block_nll(net), self.schedule, x0, t, self.block_size, self.mask_id, generator)
        return per_seq.mean() / x0.shape[1], {}

    @torch.no_grad()
    def clip_variances(self, net: nn.Module, x0: Tensor, generator: torch.Generator, intervals: list[tuple[float, float]],
                       draws: int = 8) -> dict[tuple[float, float], float]:
        """The paper's data-driven choice of the clipped schedule: for each mask-rate interval, the
        variance over ``draws`` independent draws of the per-token training loss on ``x0`` (train with
        the lowest; only the unclipped interval's mean is the NELBO)."""
        n_blocks = check_blocks(x0.shape[1], self.block_size)
        out = {}
        for lo, hi in intervals:
            losses = [block_loss(self.block_nll(net), self.schedule, x0,
                                 block_times(x0.shape[0], n_blocks, generator, antithetic=False, lo=lo, hi=hi),
                                 self.block_size, self.mask_id, generator).mean() / x0.shape[1] for _ in range(draws)]
            out[(lo, hi)] = float(torch.stack(losses).double().var())
        return out

    @torch.no_grad()
    def nll(self, net, x0, *, generator, n_samples=1, clean_mask=None, estimator="mc") -> tuple[Tensor, Tensor]:
        """The block NELBO by ``mc``, ``quadrature`` (the blocks share each noise level) or ``count``
        (the level integrated exactly per block; with block size 1 the exact AR NLL)."""
        if clean_mask is not None:
            check_block_condition(clean_mask, self.block_size)
        if estimator == "count":
            est = block_count_nelbo(self.block_nll(net), self.mask_id, x0, self.block_size, generator=generator,
                                    n=n_samples, clean_mask=clean_mask)
        else:
            est = nelbo(block_point(self.block_nll(net), self.mask_id, clean_mask), self.schedule, x0,
                        generator=generator, n=n_samples, method=estimator)
        return est.nll, est.stderr

    def denoiser(self, net: nn.Module, batch: int, use_cache: bool):
        """The sampler's block denoiser: KV-cached (:class:`CachedBlocks`) or the whole prefix each call."""
        if use_cache:
            return CachedBlocks(net, batch, self.block_size, self.mask_id)

        def uncached(x: Tensor) -> Tensor:
            done = (x.shape[1] - 1) // self.block_size * self.block_size
            logits = net(x, attn_mask=block_causal_mask(x.shape[1], self.block_size, x.device))[:, done:]
            return subs_log_probs(logits, x[:, done:], self.mask_id)
        return uncached

    @torch.no_grad()
    def sample(self, net, batch, length, *, steps, generator, condition=None, **options: Any) -> SampleOutput:
        """Block by block, ``steps`` masked-sampler steps per block; ``use_cache`` (default) keeps the
        finished blocks' keys and values; ``stop_at_eos`` ends each row at its first generated
        end-of-text (the rest padded) and stops once every row has one."""
        sampler = check_sampler(options.get("sampler") or self.options.get("sampler") or "cached", samplers(), self.kind)
        stop = bool(options.get("stop_at_eos", False))
        out = sample_blocks(
            self.denoiser(net, batch, bool(options.get("use_cache", True))), self.mask_id, self.vocab_size, self.schedule,
            batch, length, self.block_size, steps, generator=generator, condition=condition,
            kernel="ancestral" if sampler == "cached" else sampler, cache=sampler == "cached",
            temperature=options.get("temperature", 1.0), top_p=options.get("top_p", 1.0),
            stop_id=self.specials.eos if stop else None, fill_id=self.specials.pad,
        )
        return SampleOutput(out.tokens, out.nfe)
