"""What the discrete diffusion kinds share: training times, the network's noise conditioning, sampler names."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dlmkit.diffusion.timesteps import sample_t
from dlmkit.errors import DlmError


def training_times(options: dict[str, Any], batch: int, generator: torch.Generator) -> Tensor:
    """Diffusion times for one batch: antithetic (default) or iid uniform, on the generator's device."""
    mode = options.get("t_sampling", "antithetic")
    if mode not in ("antithetic", "uniform"):
        raise DlmError(f"unknown diffusion.t_sampling '{mode}' (antithetic, uniform)")
    return sample_t(batch, generator, antithetic=mode == "antithetic").to(generator.device)


def as_cond(sigma: Tensor, like: Tensor) -> Tensor:
    """A noise level [B] as the network's float32 conditioning on ``like``'s device."""
    return sigma.to(device=like.device, dtype=torch.float32)


def check_sampler(name: str, known: tuple[str, ...], kind: str) -> str:
    if name not in known:
        raise DlmError(f"unknown sampler '{name}' for {kind} (choose: {', '.join(known)})")
    return name
