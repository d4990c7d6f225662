"""The cosine masking schedule (MDLM's ``cosine``): alpha(t) = eps + (1 - eps) cos(pi t / 2).

alpha(t) = e^{-sigma_bar(t)} is the probability that a token is still clean at time t. Against the
log-linear schedule (alpha linear in t) it unmasks slowly near t = 1 and quickly near t = 0, so
an ancestral sampler on a uniform time grid spends more of its steps on the first tokens.
"""

from __future__ import annotations

import math

import torch

from dlmkit.diffusion.schedules.base import NoiseSchedule
from dlmkit.errors import DlmError


class Cosine(NoiseSchedule, name="cosine"):
    """sigma_bar(t) = -log(eps + (1 - eps) cos(pi t / 2)); eps = 0 reaches the all-mask prior at t = 1."""

    def __init__(self, eps: float = 1e-3):
        if not 0.0 <= eps < 1.0:
            raise DlmError(f"cosine schedule needs 0 <= eps < 1, got {eps}")
        self.eps = eps

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        # cos(pi t / 2) written as sin(pi (1 - t) / 2): exactly 1 at t = 0 and exactly 0 at t = 1
        return self.eps + (1.0 - self.eps) * torch.sin((1.0 - t) * (math.pi / 2))

    def total(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log(self._alpha(t))

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.eps) * (math.pi / 2) * torch.sin(t * (math.pi / 2)) / self._alpha(t)
