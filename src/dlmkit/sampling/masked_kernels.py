"""Masked-diffusion sampler step kernels: a plan of steps, one step's draw and its exact law, a registry.

A kernel is a :class:`MaskedKernel` subclass registered by name (``class K(MaskedKernel,
name="...")``). ``plan`` turns a schedule and a step count into :class:`MaskedStep` s; at each step
the loop calls the denoiser once (log p(x0 | x_t) [B, L, V]) and then ``draw`` (the sampler) or
``probs`` (the exact-law enumeration in ``discrete.masked_output_distribution``), so sampling and
its exact output distribution run the same kernel. ``probs`` is the step's law as a product over
positions: every kernel here moves positions independently given x_t (which positions move may
depend on the whole row, as in the confidence-ordered kernel, but not on the values drawn).
Temperature and nucleus truncation (``adjust_log_probs``) belong to the kernel instance.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from dlmkit.diffusion.masked import ancestral_probs
from dlmkit.diffusion.schedules import NoiseSchedule
from dlmkit.errors import DlmError
from dlmkit.registry import Registered
from dlmkit.sampling.categorical import adjust_log_probs, gumbel

MASKED_KERNELS: dict[str, type["MaskedKernel"]] = {}
"""name -> kernel class, filled by subclassing with ``name=``."""


@dataclass(frozen=True)
class MaskedStep:
    """One step from time t to s < t: the denoiser's noise level sigma_bar(t) and alpha = e^-sigma_bar at t and s."""

    sigma: float
    alpha_t: float
    alpha_s: float


def check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise DlmError(f"steps must be an integer >= 1, got {steps!r}")


def masked_plan(schedule: NoiseSchedule, steps: int) -> list[MaskedStep]:
    """Steps on the uniform grid t = 1 .. 0 with alpha(0) := 1, so the last step unmasks everything."""
    check_steps(steps)
    sigmas = schedule.total(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)).tolist()
    alphas = [math.exp(-s) for s in sigmas[:-1]] + [1.0]
    return [MaskedStep(sigmas[k], alphas[k], alphas[k + 1]) for k in range(steps)]


class MaskedKernel(Registered, ABC):
    """One masked sampler's steps; subclasses register with ``name=`` and implement ``draw`` and ``probs``."""

    registry = MASKED_KERNELS
    registry_what = "masked sampler"

    def __init__(self, mask_id: int, temperature: float = 1.0, top_p: float = 1.0):
        if temperature <= 0.0 or not 0.0 < top_p <= 1.0:
            raise DlmError(f"need temperature > 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        self.mask_id, self.temperature, self.top_p = mask_id, temperature, top_p

    def adjust(self, log_p: torch.Tensor) -> torch.Tensor:
        """Temperature and nucleus truncation of log p(x0 | x_t) rows, in float64."""
        return adjust_log_probs(log_p, self.temperature, self.top_p)

    def plan(self, schedule: NoiseSchedule, steps: int) -> list[MaskedStep]:
        return masked_plan(schedule, steps)

    @abstractmethod
    def draw(self, log_p: torch.Tensor, x: torch.Tensor, step: MaskedStep, generator: torch.Generator) -> torch.Tensor:
        """x_s [B, L] drawn from x_t = ``x`` given the denoiser's ``log_p`` [B, L, V] (``x`` itself if nothing moves)."""

    @abstractmethod
    def probs(self, log_p: torch.Tensor, x: torch.Tensor, step: MaskedStep) -> torch.Tensor:
        """The law of ``draw``: p(x_s^i = y | x_t) [B, L, V], independent over positions given x_t."""


def get_masked_kernel(name: str, mask_id: int, **options: Any) -> MaskedKernel:
    """A registered masked sampler kernel by name (options: temperature, top_p)."""
    if name not in MASKED_KERNELS:
        raise DlmError(f"unknown masked sampler {name!r}; choose one of {', '.join(sorted(MASKED_KERNELS))}")
    return MASKED_KERNELS[name](mask_id, **options)


class Ancestral(MaskedKernel, name="ancestral"):
    """MDLM's ancestral step: each masked token unmasks with probability (alpha_s - alpha_t)/(1 - alpha_t).

    Draws u [B, L] ("unmask?") and then Gumbel noise only for the positions that unmask, so every
    token's value costs one [V] draw over the whole run and the numbers drawn do not depend on
    whether the network was called (what makes the cached sampler exact).
    """

    def draw(self, log_p: torch.Tensor, x: torch.Tensor, step: MaskedStep, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        unmask = (x == self.mask_id) & (u < (step.alpha_s - step.alpha_t) / (1.0 - step.alpha_t))
        if not unmask.any():
            return x
        rows = self.adjust(log_p[unmask])  # row-wise: only the rows that unmask
        x = x.clone()
        x[unmask] = (rows + gumbel(tuple(rows.shape), generator)).argmax(-1)
        return x

    def probs(self, log_p: torch.Tensor, x: torch.Tensor, step: MaskedStep) -> torch.Tensor:
        return ancestral_probs(self.adjust(log_p), x, self.mask_id, step.alpha_t, step.alpha_s)
