"""Samplers for embedding-space Gaussian diffusion (DiffuSeq): ancestral DDPM and respaced DDIM.

All samplers implement ``Seq2SeqSampler``: given the conditioning embeddings ``x_cond [B,L,D]``
(source positions hold the clean source embeddings; target positions are ignored) and
``target_mask [B,L]``, they generate the target positions and return a ``SampleOutput``.
Source positions are re-imposed from ``x_cond`` after every step, so they come back
bit-identical. A one-step generator (e.g. a distilled student) implements the same protocol
with ``nfe == 1``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from dlmkit.diffusion.gaussian import GaussianDiffusion, LogitsFn, X0Fn, impose_source
from dlmkit.sampling.output import SampleOutput


@runtime_checkable
class Seq2SeqSampler(Protocol):
    """Anything that turns a conditioned, partly noised sequence into tokens.

    ``sample`` must leave positions where ``target_mask`` is False equal to ``x_cond`` and draw all
    randomness from ``generator`` (None: torch's global generator).
    """

    def sample(
        self, x_cond: Tensor, target_mask: Tensor, generator: torch.Generator | None = None
    ) -> SampleOutput: ...


def nearest_embedding(x: Tensor, table: Tensor) -> tuple[Tensor, Tensor]:
    """Ids ``[...]`` and points ``[..., D]`` of the rows of ``table [V,D]`` nearest (L2) to ``x [..., D]``.

    Uses ``||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2``, dropping ``||x||^2`` (constant per query);
    queries go in chunks so the distance matrix stays under ~2^24 entries for large vocabularies.
    """
    flat = x.reshape(-1, x.shape[-1]).to(table.dtype)
    sq = table.pow(2).sum(-1)
    chunk = max(1, 2**24 // len(table))
    ids = torch.cat([(sq - 2.0 * q @ table.T).argmin(-1) for q in flat.split(chunk)]).view(x.shape[:-1])
    return ids, table[ids].to(x.dtype)


def respaced_timesteps(T: int, K: int) -> Tensor:
    """``K`` increasing timesteps evenly spaced over ``[0, T-1]`` (rounded; both ends kept when K >= 2).

    ``K == 1`` gives ``[T-1]``: a single x0 prediction from pure noise.
    """
    if not 1 <= K <= T:
        raise ValueError(f"number of steps must be in [1, {T}], got {K}")
    if K == 1:
        return torch.tensor([T - 1])
    return torch.from_numpy(np.round(np.linspace(0, T - 1, K)).astype(np.int64))


class _ReverseSampler(ABC):
    """Shared loop of the iterative samplers: noise init, x0 prediction (+ clamping), decoding.

    * ``clamp_step``: replace ``x0_hat`` by its nearest row of ``embedding`` at every step with
      ``t >= clamp_step`` (DiffuSeq's ``clamp_first`` mode; ``0`` = every step, its default);
      ``None`` never clamps.
    * ``decode``: ``"logits"`` takes ``argmax logits_fn(x)``; ``"nearest"`` the nearest embedding.
    """

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        x0_fn: X0Fn,
        *,
        logits_fn: LogitsFn | None = None,
        embedding: Tensor | None = None,
        decode: Literal["logits", "nearest"] = "logits",
        clamp_step: int | None = None,
    ):
        if decode == "logits" and logits_fn is None:
            raise ValueError("decode='logits' needs logits_fn")
        if decode not in ("logits", "nearest"):
            raise ValueError(f"decode must be 'logits' or 'nearest', got {decode!r}")
        if (decode == "nearest" or clamp_step is not None) and embedding is None:
            raise ValueError("decode='nearest' and clamping need the embedding table")
        self.diffusion = diffusion
        self.x0_fn = x0_fn
        self.logits_fn = logits_fn
        self.embedding = embedding
        self.decode = decode
        self.clamp_step = clamp_step

    @abstractmethod
    def timesteps(self) -> Tensor:
        """The increasing timesteps visited (in reverse) by ``sample``."""

    @abstractmethod
    def _step(self, x_t: Tensor, x0_hat: Tensor, i: int, randn: Callable[[], Tensor]) -> Tensor:
        """``x`` at the next smaller visited time from ``x_t`` at ``timesteps()[i]``; noise from ``randn``."""

    def _predict_x0(self, x_t: Tensor, t: int) -> Tensor:
        x0_hat = self.x0_fn(x_t, torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device))
        if self.clamp_step is not None and t >= self.clamp_step:
            x0_hat = nearest_embedding(x0_hat, self.embedding)[1]
        return x0_hat

    def _tokens(self, x: Tensor) -> Tensor:
        if self.decode == "logits":
            return self.logits_fn(x).argmax(-1)
        return nearest_embedding(x, self.embedding)[0]

    @torch.no_grad()
    def sample(
        self, x_cond: Tensor, target_mask: Tensor, generator: torch.Generator | None = None
    ) -> SampleOutput:
        """Start from ``N(0, I)`` at target positions and denoise through ``timesteps()`` in reverse."""

        def randn() -> Tensor:
            return torch.randn(x_cond.shape, generator=generator, dtype=x_cond.dtype, device=x_cond.device)

        ts = self.timesteps().tolist()
        x = impose_source(randn(), x_cond, target_mask)
        for i in reversed(range(len(ts))):
            x0_hat = self._predict_x0(x, ts[i])
            x = impose_source(self._step(x, x0_hat, i, randn), x_cond, target_mask)
        return SampleOutput(tokens=self._tokens(x), nfe=len(ts), embeddings=x)


class DDPMSampler(_ReverseSampler):
    """Ancestral sampling over all ``T`` steps: ``x_{t-1} ~ N(mu(x_t, x0_hat), sigma_t^2 I)``.

    ``mu`` is the posterior mean of ``q(x_{t-1} | x_t, x_0 = x0_hat)``. ``variance="small"`` (default)
    uses that posterior's variance; ``"large"`` uses ``beta_t`` (DDPM's "fixedlarge", DiffuSeq's
    choice). The last step (t = 0) returns ``x0_hat = E[x_0 | x_{t=0}]`` for an exact denoiser, so
    the output is slightly less spread than the data (by ``Var[x_0 | x_{t=0}]``; ~1.5% of a unit
    variance with the sqrt schedule, whose ``abar_0 ~ 0.985``).
    """

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        x0_fn: X0Fn,
        *,
        variance: Literal["small", "large"] = "small",
        **kw,
    ):
        super().__init__(diffusion, x0_fn, **kw)
        if variance not in ("small", "large"):
            raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")
        self.variance = variance

    def timesteps(self) -> Tensor:
        return torch.arange(self.diffusion.num_timesteps)

    def _step(self, x_t: Tensor, x0_hat: Tensor, i: int, randn: Callable[[], Tensor]) -> Tensor:
        d = self.diffusion
        t = torch.full((x_t.shape[0],), i, dtype=torch.long, device=x_t.device)
        mean, var, _ = d.q_posterior_mean_variance(x0_hat, x_t, t)
        if i == 0:
            return mean
        if self.variance == "large":
            var = d.gather(d.betas, t, x_t)
        return mean + var.sqrt() * randn()


class DDIMSampler(_ReverseSampler):
    """DDIM (Song et al. 2021) on ``K`` evenly respaced timesteps ``tau_1 < ... < tau_K``.

    From ``t = tau_i`` to ``s = tau_{i-1}`` (``abar_s = 1`` after ``tau_1``):
    ``eps = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)``,
    ``sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)``,
    ``x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps + sigma z``.
    ``eta = 0`` is deterministic; ``eta = 1`` is ancestral sampling of the respaced chain
    (with ``K = T`` it equals ``DDPMSampler(variance="small")``). The denoiser sees the original
    timesteps ``tau_i`` (as DiffuSeq's ``SpacedDiffusion``; its ``step_gap`` loop instead steps
    from ``t`` to ``t - 1`` every ``gap`` steps). DDIM is first order: with few steps an exact
    denoiser still under-disperses (for a unit Gaussian, ~10% variance at K=50, sqrt schedule).
    """

    def __init__(self, diffusion: GaussianDiffusion, x0_fn: X0Fn, steps: int, *, eta: float = 0.0, **kw):
        super().__init__(diffusion, x0_fn, **kw)
        self._ts = respaced_timesteps(diffusion.num_timesteps, steps)
        self.eta = eta

    def timesteps(self) -> Tensor:
        return self._ts

    def _step(self, x_t: Tensor, x0_hat: Tensor, i: int, randn: Callable[[], Tensor]) -> Tensor:
        abar = self.diffusion.alphas_cumprod
        a_t = float(abar[self._ts[i]])
        a_s = float(abar[self._ts[i - 1]]) if i > 0 else 1.0
        eps = (x_t - a_t**0.5 * x0_hat) / (1.0 - a_t) ** 0.5
        sigma = self.eta * ((1.0 - a_s) / (1.0 - a_t) * (1.0 - a_t / a_s)) ** 0.5
        x_s = a_s**0.5 * x0_hat + max(1.0 - a_s - sigma**2, 0.0) ** 0.5 * eps
        return x_s + sigma * randn() if sigma > 0 else x_s
