"""Noise schedules: the total noise sigma_bar(t) and its rate d sigma_bar/dt for t in [0, 1].

The forward process of a discrete diffusion is dp_t/dt = sigma(t) Q p_t, so only the integrated
noise sigma_bar(t) = int_0^t sigma(s) ds enters the transition exp(sigma_bar(t) Q); losses weight by
the rate sigma(t) = sigma_bar'(t).  A schedule registers itself by subclassing with a name
(``class Cosine(NoiseSchedule, name="cosine")``); its parameters are its constructor's keyword
arguments, read by :func:`schedule_from_options` from a run's options under the same names, so no
table of names and parameters exists anywhere else.  Adding one is one module plus its import in
``dlmkit.diffusion.schedules``.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from typing import Any, Mapping

import torch

from dlmkit.errors import DlmError
from dlmkit.registry import Registered


SCHEDULES: dict[str, type["NoiseSchedule"]] = {}
"""name -> schedule class, filled by subclassing with ``name=``."""


class NoiseSchedule(Registered, ABC):
    """sigma_bar(t) (``total``) and sigma_bar'(t) (``rate``), elementwise on a tensor of times."""

    registry = SCHEDULES
    registry_what = "noise schedule"

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The schedule's parameters and their defaults (its constructor's keyword arguments)."""
        sig = inspect.signature(cls.__init__)
        return {p.name: p.default for p in list(sig.parameters.values())[1:]}

    @abstractmethod
    def total(self, t: torch.Tensor) -> torch.Tensor:
        """sigma_bar(t), the total noise accumulated by time t."""

    @abstractmethod
    def rate(self, t: torch.Tensor) -> torch.Tensor:
        """d sigma_bar / dt at time t."""


class LogLinear(NoiseSchedule, name="loglinear"):
    """sigma_bar(t) = -log(1 - (1-eps) t): the masked fraction 1 - e^{-sigma_bar} grows linearly in t.

    eps > 0 keeps sigma_bar(1) = -log(eps) finite (a token survives to t=1 with probability eps);
    eps = 0 reaches the all-mask prior exactly at t=1 (sigma_bar(1) = inf).
    """

    def __init__(self, eps: float = 1e-3):
        if not 0.0 <= eps < 1.0:
            raise DlmError(f"log-linear schedule needs 0 <= eps < 1, got {eps}")
        self.eps = eps

    def total(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log1p(-(1.0 - self.eps) * t)

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.eps) / (1.0 - (1.0 - self.eps) * t)


class Geometric(NoiseSchedule, name="geometric"):
    """sigma_bar(t) = sigma_min^(1-t) sigma_max^t (SEDD's schedule for the uniform graph)."""

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        if not 0.0 < sigma_min < sigma_max:
            raise DlmError(f"geometric schedule needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def total(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min ** (1.0 - t) * self.sigma_max**t

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        return self.total(t) * math.log(self.sigma_max / self.sigma_min)


def get_schedule(name: str, **kwargs: float) -> NoiseSchedule:
    """Build a schedule by registry name, e.g. ``get_schedule("loglinear", eps=1e-3)``."""
    if name not in SCHEDULES:
        raise DlmError(f"unknown noise schedule {name!r}; choose one of {', '.join(sorted(SCHEDULES))}")
    try:
        return SCHEDULES[name](**kwargs)
    except TypeError as err:
        raise DlmError(f"bad arguments for noise schedule {name!r}: {err}") from None


def schedule_from_options(options: Mapping[str, Any], default: str) -> NoiseSchedule:
    """The schedule ``options["schedule"]`` names (or ``default``), given the options under its parameters' names."""
    name = options.get("schedule") or default
    if name not in SCHEDULES:
        raise DlmError(f"unknown noise schedule {name!r}; choose one of {', '.join(sorted(SCHEDULES))}")
    return get_schedule(name, **{k: options[k] for k in SCHEDULES[name].parameters() if k in options})
