"""Embedding-space Gaussian diffusion for sequence-to-sequence text (DiffuSeq, Gong et al. 2022).

Pure maths over callables; no network lives here.

Conventions
-----------
* Embeddings are float tensors ``[B, L, D]``; ``target_mask`` ``[B, L]`` is True where a position
  belongs to the target and is noised. Every other position (the source) stays clean
  ("partial noising"): wherever ``target_mask`` is False, ``x_t == x_0`` exactly.
* Discrete time ``t in {0, ..., T-1}`` (``T = 2000`` by default); ``t = 0`` is one noising step.
  ``alpha_bar[t] = prod_{i<=t} (1 - beta_i)`` and ``q(x_t | x_0) = N(sqrt(alpha_bar[t]) x_0,
  (1 - alpha_bar[t]) I)``.
* The denoiser is ``x0_fn(x_t [B,L,D], t LongTensor[B]) -> x0_hat [B,L,D]`` (x0 parameterisation);
  the rounding head is ``logits_fn(x [B,L,D]) -> logits [B,L,V]`` (e.g. ``x @ E.T``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dlmkit.errors import DlmError

X0Fn = Callable[[Tensor, Tensor], Tensor]
LogitsFn = Callable[[Tensor], Tensor]

MAX_BETA = 0.999


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def betas_for_alpha_bar(
    alpha_bar: Callable[[float], float], T: int, max_beta: float = MAX_BETA
) -> np.ndarray:
    """Discretise a continuous ``alpha_bar(u)``, ``u in [0, 1]``, into ``T`` betas.

    ``beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), max_beta)``, so that without clipping
    ``prod_{i<=t} (1 - beta_i) = alpha_bar((t+1)/T) / alpha_bar(0)``. The clip keeps the last
    steps finite where ``alpha_bar`` reaches (or, for ``sqrt``, crosses) zero.
    """
    betas = [min(1.0 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return np.asarray(betas, dtype=np.float64)


def _sqrt_betas(T: int) -> np.ndarray:
    """DiffuSeq's schedule: ``alpha_bar(u) = 1 - sqrt(u + s)``, ``s = 1e-4``.

    Noise rises steeply at the start (``alpha_bar[0] ~ 0.985`` for T=2000), so even small t
    corrupt embeddings enough to make denoising non-trivial (Diffusion-LM, Li et al. 2022).
    """
    return betas_for_alpha_bar(lambda u: 1.0 - math.sqrt(u + 1e-4), T)


def _cosine_betas(T: int) -> np.ndarray:
    """Nichol & Dhariwal (2021): ``alpha_bar(u) = cos^2((u + 0.008) / 1.008 * pi / 2)``."""
    return betas_for_alpha_bar(lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2, T)


def _linear_betas(T: int) -> np.ndarray:
    """Ho et al. (2020): betas linear from 1e-4 to 0.02 at T=1000, rescaled by 1000/T."""
    scale = 1000.0 / T
    return np.linspace(scale * 1e-4, scale * 0.02, T, dtype=np.float64)


SCHEDULES: dict[str, Callable[[int], np.ndarray]] = {
    "sqrt": _sqrt_betas,
    "cosine": _cosine_betas,
    "linear": _linear_betas,
}


def get_schedule(name: str, T: int = 2000) -> np.ndarray:
    """Betas ``[T]`` (float64) of the named schedule: one of ``SCHEDULES`` (sqrt, cosine, linear)."""
    if name not in SCHEDULES:
        raise DlmError(f"unknown noise schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    if T < 2:
        raise DlmError(f"a diffusion needs at least 2 steps, got T={T}")
    return SCHEDULES[name](T)


# --------------------------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------------------------


def _bcast(x: Tensor) -> Tensor:
    """``[B] -> [B, 1, 1]`` to scale ``[B, L, D]`` tensors per sequence."""
    return x.view(-1, 1, 1)


def impose_source(x: Tensor, x_source: Tensor, target_mask: Tensor | None) -> Tensor:
    """``x`` at target positions, ``x_source`` elsewhere (bit-identical copy)."""
    if target_mask is None:
        return x
    return torch.where(target_mask.unsqueeze(-1), x, x_source)


class GaussianDiffusion:
    """Precomputed float64 arrays of a discrete Gaussian diffusion with ``T = len(betas)`` steps.

    Posterior ``q(x_{t-1} | x_t, x_0) = N(c1[t] x_0 + c2[t] x_t, var[t])`` with
    ``c1 = beta_t sqrt(abar_{t-1}) / (1 - abar_t)``, ``c2 = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)``,
    ``var = beta_t (1 - abar_{t-1}) / (1 - abar_t)`` and ``abar_{-1} = 1`` (so at t=0 the
    posterior is the point mass at x_0). ``posterior_log_variance_clipped`` replaces the
    ``log 0`` at t=0 by ``log var[1]``, as in DDPM.
    """

    def __init__(self, betas: np.ndarray | Tensor):
        b = torch.as_tensor(np.asarray(betas, dtype=np.float64))
        if b.ndim != 1 or len(b) < 2 or not bool(((b > 0) & (b <= 1)).all()):
            raise ValueError("betas must be a 1-D array of at least 2 values in (0, 1]")
        self.num_timesteps = len(b)
        self.betas = b
        self.alphas = 1.0 - b
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod_prev = torch.cat([b.new_ones(1), self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        one_minus = 1.0 - self.alphas_cumprod
        self.posterior_variance = b * (1.0 - self.alphas_cumprod_prev) / one_minus
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        self.posterior_mean_coef1 = b * self.alphas_cumprod_prev.sqrt() / one_minus
        self.posterior_mean_coef2 = self.alphas.sqrt() * (1.0 - self.alphas_cumprod_prev) / one_minus

    @classmethod
    def from_schedule(cls, name: str = "sqrt", T: int = 2000) -> GaussianDiffusion:
        """The diffusion of a named schedule (see ``get_schedule``)."""
        return cls(get_schedule(name, T))

    @staticmethod
    def gather(arr: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """``arr[t]`` as ``[B, 1, 1]`` in ``like``'s dtype and device."""
        return _bcast(arr.to(like.device)[t.to(like.device)].to(like.dtype))

    def q_mean_variance(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``sqrt(abar_t) x_0`` and variance ``1 - abar_t`` (``[B,1,1]``) of ``q(x_t | x_0)``."""
        mean = self.gather(self.sqrt_alphas_cumprod, t, x0) * x0
        return mean, self.gather(1.0 - self.alphas_cumprod, t, x0)

    def q_sample(
        self,
        x0: Tensor,
        t: Tensor,
        target_mask: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``; ``x_t = x_0`` off ``target_mask``."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        mean, var = self.q_mean_variance(x0, t)
        return impose_source(mean + var.sqrt() * noise, x0, target_mask)

    def q_posterior_mean_variance(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean ``[B,L,D]``, variance and clipped log-variance (``[B,1,1]``) of ``q(x_{t-1} | x_t, x_0)``."""
        c1 = self.gather(self.posterior_mean_coef1, t, x_t)
        mean = c1 * x0 + self.gather(self.posterior_mean_coef2, t, x_t) * x_t
        return (
            mean,
            self.gather(self.posterior_variance, t, x_t),
            self.gather(self.posterior_log_variance_clipped, t, x_t),
        )


# --------------------------------------------------------------------------------------------
# Training loss
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossTerms:
    """Per-sequence ``[B]`` losses; ``loss`` is the total to minimise (times importance weights)."""

    loss: Tensor
    mse: Tensor  # ||x0_fn(x_t, t) - x_0||^2 for t > 0, ||x0_fn(x_t, 0) - Emb(w)||^2 at t = 0
    tT: Tensor  # ||sqrt(abar_{T-1}) x_0||^2: the prior term, keeps x_T near N(0, I)
    rounding: Tensor  # -log p(w | x_0) through logits_fn
    anchor: Tensor  # -log p(w | x0_hat) (zeros when anchor_weight == 0)


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x [B, L, ...]`` over positions where ``mask [B, L]`` is True (all when None) and
    over trailing dims, per sequence."""
    if mask is None:
        return x.flatten(1).mean(1)
    m = mask.to(x.dtype).view(*mask.shape, *([1] * (x.ndim - 2)))
    per_pos = x[0, 0].numel()
    return (x * m).flatten(1).sum(1) / (m.flatten(1).sum(1) * per_pos).clamp_min(1.0)


def _token_nll(logits_fn: LogitsFn, x: Tensor, token_ids: Tensor, target_mask: Tensor) -> Tensor:
    logits = logits_fn(x)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half -> float, keep float64
    nll = F.cross_entropy(logits.flatten(0, 1), token_ids.flatten(), reduction="none")
    return masked_mean(nll.view(token_ids.shape), target_mask)


def training_losses(
    diffusion: GaussianDiffusion,
    x0_fn: X0Fn,
    logits_fn: LogitsFn,
    emb: Tensor,
    token_ids: Tensor,
    target_mask: Tensor,
    t: Tensor,
    *,
    generator: torch.Generator | None = None,
    x0_std: float | None = None,
    anchor_weight: float = 0.0,
) -> LossTerms:
    """DiffuSeq's objective at timesteps ``t`` (LongTensor[B]); all terms averaged over target positions.

    With ``emb = Emb(w)`` the clean token embeddings (keep its graph: the embeddings are learnt):

    * ``x_0 = Emb(w) + x0_std * eps`` at target positions: the learnt-embedding step
      ``q(x_0 | w)`` of Diffusion-LM, default ``x0_std = sqrt(1 - abar_0)``; ``0`` disables it.
      (DiffuSeq also perturbs source positions; here the source stays clean, as at sampling.)
    * ``x_t ~ q(x_t | x_0)`` with partial noising, ``x0_hat = x0_fn(x_t, t)``;
    * ``mse = ||x0_hat - x_0||^2`` for t > 0 and the "t0" term ``||x0_hat - Emb(w)||^2`` at t == 0;
    * ``tT = ||sqrt(abar_{T-1}) x_0||^2``, the mean of ``q(x_T | x_0)``: the prior KL up to constants;
    * ``rounding = -log p(w | x_0)`` with ``p = softmax(logits_fn(x_0))``. As in DiffuSeq (its
      ``decoder_nll`` on ``x_start``) it is taken on ``x_0``, not on the prediction: it trains
      the embeddings and the head to be decodable, independently of the denoiser;
    * ``anchor = -log p(w | x0_hat)``, Difformer's anchor loss (Gao et al. 2022), added with weight
      ``anchor_weight``. MSE alone is minimised by shrinking all embeddings together (collapse);
      asking the *prediction* to stay decodable ties the embedding scale to the denoiser's task.

    ``loss = mse + tT + rounding + anchor_weight * anchor``. With a loss-aware time sampler,
    multiply ``loss`` by its importance weights and feed ``loss.detach()`` back to ``update``.
    """
    if x0_std is None:
        x0_std = float(diffusion.sqrt_one_minus_alphas_cumprod[0])
    x0 = emb
    if x0_std > 0:
        eps0 = torch.randn(emb.shape, generator=generator, dtype=emb.dtype, device=emb.device)
        x0 = emb + x0_std * eps0 * target_mask.unsqueeze(-1)
    x_t = diffusion.q_sample(x0, t, target_mask, generator=generator)
    x0_hat = x0_fn(x_t, t)
    mse = torch.where(
        t == 0,
        masked_mean((x0_hat - emb) ** 2, target_mask),
        masked_mean((x0_hat - x0) ** 2, target_mask),
    )
    last = torch.full_like(t, diffusion.num_timesteps - 1)
    tT = masked_mean(diffusion.q_mean_variance(x0, last)[0] ** 2, target_mask)
    rounding = _token_nll(logits_fn, x0, token_ids, target_mask)
    anchor = torch.zeros_like(mse)
    if anchor_weight > 0:
        anchor = _token_nll(logits_fn, x0_hat, token_ids, target_mask)
    loss = mse + tT + rounding + anchor_weight * anchor
    return LossTerms(loss=loss, mse=mse, tT=tT, rounding=rounding, anchor=anchor)


# --------------------------------------------------------------------------------------------
# Time sampling
# --------------------------------------------------------------------------------------------


class TimeSampler(Protocol):
    """Draws training timesteps with importance weights ``w(t) = 1 / (T p(t))`` (unbiased in E_t)."""

    def probs(self) -> Tensor: ...

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]: ...

    def update(self, t: Tensor, losses: Tensor) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def _draw(p: Tensor, batch_size: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    t = torch.multinomial(p, batch_size, replacement=True, generator=generator)
    return t, (1.0 / (len(p) * p[t])).float()


class UniformTimeSampler:
    """``t ~ U{0, ..., T-1}``; weights are all ones. Stateless."""

    def __init__(self, T: int):
        self.T = T

    def probs(self) -> Tensor:
        return torch.full((self.T,), 1.0 / self.T, dtype=torch.float64)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(t LongTensor[B], weights FloatTensor[B])`` on the CPU."""
        return _draw(self.probs(), batch_size, generator)

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Nothing to learn: uniform sampling ignores the losses."""

    def state_dict(self) -> dict:
        return {"T": self.T}

    def load_state_dict(self, state: dict) -> None:
        self.T = int(state["T"])


class LossSecondMomentSampler:
    """Loss-aware importance sampling of t (Nichol & Dhariwal 2021; DiffuSeq's ``lossaware``).

    Keeps the last ``history`` losses per t. Until every t has a full history (warm-up) it is
    uniform; then ``p(t) = (1 - u) sqrt(E[L_t^2]) / sum_s sqrt(E[L_s^2]) + u / T`` with
    ``u = uniform_prob``, which (nearly) minimises the variance of the weighted loss.
    """

    def __init__(self, T: int, history: int = 10, uniform_prob: float = 1e-3):
        self.history_len = history
        self.uniform_prob = uniform_prob
        self.history = torch.zeros(T, history, dtype=torch.float64)
        self.counts = torch.zeros(T, dtype=torch.long)

    def warmed_up(self) -> bool:
        return bool((self.counts == self.history_len).all())

    def probs(self) -> Tensor:
        T = len(self.counts)
        w = self.history.pow(2).mean(-1).sqrt()
        if not self.warmed_up() or not bool(w.sum() > 0):
            return torch.full((T,), 1.0 / T, dtype=torch.float64)
        return w / w.sum() * (1.0 - self.uniform_prob) + self.uniform_prob / T

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(t LongTensor[B], weights FloatTensor[B])`` on the CPU; weights ``1 / (T p(t))``."""
        return _draw(self.probs(), batch_size, generator)

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Append each ``losses[i]`` to the history of ``t[i]`` in order, dropping the oldest when full."""
        for ti, li in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            n = int(self.counts[ti])
            if n == self.history_len:
                self.history[ti] = torch.roll(self.history[ti], -1)
                self.history[ti, -1] = li
            else:
                self.history[ti, n] = li
                self.counts[ti] = n + 1

    def state_dict(self) -> dict:
        return {
            "history": self.history.clone(),
            "counts": self.counts.clone(),
            "uniform_prob": self.uniform_prob,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["history"].shape != self.history.shape:
            raise ValueError(f"history shape {tuple(state['history'].shape)} != {tuple(self.history.shape)}")
        self.history = state["history"].clone().double()
        self.counts = state["counts"].clone().long()
        self.uniform_prob = float(state["uniform_prob"])


def get_time_sampler(name: str, T: int) -> TimeSampler:
    """``"uniform"`` or ``"lossaware"`` (``LossSecondMomentSampler`` with DiffuSeq's defaults)."""
    if name == "uniform":
        return UniformTimeSampler(T)
    if name == "lossaware":
        return LossSecondMomentSampler(T)
    raise DlmError(f"unknown time sampler {name!r}; choose 'uniform' or 'lossaware'")
