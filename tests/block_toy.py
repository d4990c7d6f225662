"""Exact block-diffusion denoisers of an enumerable :class:`toy.Toy` (absorbing), from sums over its data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from toy import Toy


def block_denoiser(toy: Toy, block_size: int):
    """``fn(x [S, end])``: exact SUBS log p(x0 | x) of the last (maybe short) block, the earlier blocks clean."""
    data_states, probs = toy.states[toy.data > 0], toy.data[toy.data > 0]

    def fn(x: torch.Tensor) -> torch.Tensor:
        end = x.shape[1]
        known = x != toy.mask_id
        match = ((data_states[None, :, :end] == x[:, None, :]) | ~known[:, None, :]).all(-1)  # [S, N]
        w = match.double() * probs[None]
        start = (end - 1) // block_size * block_size
        onehot = F.one_hot(data_states[:, start:end], toy.vocab).double()
        return (torch.einsum("sn,nbv->sbv", w, onehot) / w.sum(-1)[:, None, None]).log()
    return fn


def block_nll_fn(toy: Toy, block_size: int):
    """Exact :data:`dlmkit.diffusion.block.BlockNllFn`: each block's masked NLL given the clean earlier blocks."""
    fn = block_denoiser(toy, block_size)

    def nll_fn(x_t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x0.shape, dtype=torch.float64)
        for start in range(0, x0.shape[1], block_size):
            end = min(start + block_size, x0.shape[1])
            log_p = fn(torch.cat([x0[:, :start], x_t[:, start:end]], dim=1))
            nll = -log_p.gather(-1, x0[:, start:end, None]).squeeze(-1)
            out[:, start:end] = torch.where(x_t[:, start:end] == toy.mask_id, nll, 0.0)
        return out
    return nll_fn
