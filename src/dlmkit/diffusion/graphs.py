"""Per-token forward graphs of discrete diffusion (SEDD): absorbing (mask) and uniform.

Convention: Q[y, x] is the forward rate of a jump x -> y (columns sum to zero) and a token
evolves as p_sigma(. | x0) = exp(sigma Q) e_{x0}.  With the log concrete score
log s(x)_i[y] = log p(x with x^i := y) / p(x), the reverse rate x -> y at position i is
Q[x^i, y] s(x)_i[y]: the forward rate *into* x^i from y, times the ratio.  Tensors are
x [B, L] int64, sigma [B], per-position vectors [B, L, V].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from dlmkit.errors import DlmError


def _col(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-sequence [B] tensor to broadcast against [B, L] (ndim 2) or [B, L, V] (ndim 3)."""
    return sigma.reshape(-1, *([1] * (ndim - 1)))


def score_ratios(x: torch.Tensor, log_score: torch.Tensor) -> torch.Tensor:
    """exp(log_score) with the (irrelevant) entry at y == x^i set to the exact value 1."""
    return log_score.scatter(-1, x.unsqueeze(-1), 0.0).exp_()  # exp(0) = 1 exactly; no [B, L, V] one-hot


class Graph(ABC):
    """A forward CTMC on V token states applied independently to each position."""

    vocab_size: int

    @abstractmethod
    def transition(self, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """p_sigma(x_t^i = y | x0^i) for all y: [B, L, V]."""

    @abstractmethod
    def transp_transition(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """p_sigma(x^i | x0^i = y) for all y (a row of exp(sigma Q)): [B, L, V]."""

    @abstractmethod
    def staggered_score(self, x: torch.Tensor, log_score: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """exp(-sigma Q)^T s: un-noises the ratio vector by sigma (discrete Tweedie, SEDD Thm 4.2)."""

    @abstractmethod
    def rate_into(self, x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Q[x^i, y], the forward rate y -> x^i, for all y (0 at y == x^i): [B, L, V]."""

    @abstractmethod
    def sample_forward(
        self, x0: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator,
        clean_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw x_t ~ p_sigma(. | x0) per position; positions where clean_mask is True stay x0."""

    @abstractmethod
    def sample_prior(self, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """Draw from the sigma -> inf limit of the forward process."""

    @abstractmethod
    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log prior(x) per sequence: [B]."""

    def reverse_rate(self, x: torch.Tensor, log_score: torch.Tensor) -> torch.Tensor:
        """Reverse rate x^i -> y = Q[x^i, y] s(x)_i[y] (0 at y == x^i), per unit of sigma."""
        return self.rate_into(x, log_score.dtype) * score_ratios(x, log_score)

    def tweedie_probs(self, x: torch.Tensor, log_score: torch.Tensor, dsigma: torch.Tensor) -> torch.Tensor:
        """Unnormalised p(x_{sigma - dsigma}^i = y | x_sigma): (exp(-dsigma Q)^T s)_y exp(dsigma Q)[x^i, y].

        Exact per position for the exact score; clamped at 0 against score errors.
        """
        return self.staggered_score(x, log_score, dsigma).clamp_min(0.0) * self.transp_transition(x, dsigma)

    def denoise_probs(self, x: torch.Tensor, log_score: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Unnormalised p(x0^i = y | x_sigma): Tweedie all the way to sigma = 0 (SEDD's final denoise)."""
        return self.tweedie_probs(x, log_score, sigma)


class Absorbing(Graph):
    """Every real token jumps to ``mask_id`` at rate 1: Q = e_mask 1^T - I (mask column zero).

    p_sigma(x_t = x0) = e^-sigma, p_sigma(x_t = mask) = 1 - e^-sigma; the prior is all-mask.
    """

    def __init__(self, vocab_size: int, mask_id: int):
        if vocab_size < 2 or not 0 <= mask_id < vocab_size:
            raise DlmError(f"absorbing graph needs vocab_size >= 2 and 0 <= mask_id < vocab_size, got {vocab_size}, {mask_id}")
        self.vocab_size, self.mask_id = vocab_size, mask_id

    def _mask_vec(self, like: torch.Tensor) -> torch.Tensor:
        return F.one_hot(torch.tensor(self.mask_id, device=like.device), self.vocab_size).to(like.dtype)

    def transition(self, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        stay = _col(torch.exp(-sigma), 3)
        return stay * F.one_hot(x0, self.vocab_size).to(sigma.dtype) + (1 - stay) * self._mask_vec(sigma)

    def transp_transition(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        stay = _col(torch.exp(-sigma), 3)
        masked = (x == self.mask_id).unsqueeze(-1).to(sigma.dtype)
        return stay * F.one_hot(x, self.vocab_size).to(sigma.dtype) + (1 - stay) * masked

    def staggered_score(self, x: torch.Tensor, log_score: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = score_ratios(x, log_score)
        mask_vec = self._mask_vec(s)
        real_sum = (s * (1 - mask_vec)).sum(-1, keepdim=True)
        grow = _col(torch.exp(sigma), 3).to(s.dtype)
        return s * grow * (1 - mask_vec) + (s + (1 - grow) * real_sum) * mask_vec

    def rate_into(self, x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        masked = (x == self.mask_id).unsqueeze(-1).to(dtype)
        return masked * (1 - self._mask_vec(masked))

    def denoise_probs(self, x: torch.Tensor, log_score: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Tweedie to sigma = 0 with the mask state dropped (clean data holds no mask)."""
        probs = self.tweedie_probs(x, log_score, sigma)
        return probs * (1 - self._mask_vec(probs))

    def sample_forward(self, x0, sigma, generator, clean_mask=None):
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        move = u < _col(-torch.expm1(-sigma.double()), 2)
        if clean_mask is not None:
            move &= ~clean_mask
        return torch.where(move, torch.full_like(x0, self.mask_id), x0)

    def sample_prior(self, batch, length, generator):
        return torch.full((batch, length), self.mask_id, dtype=torch.long, device=generator.device)

    def prior_log_prob(self, x):
        all_mask = (x == self.mask_id).all(-1)
        return torch.where(all_mask, 0.0, -math.inf).double()


class Uniform(Graph):
    """Every token jumps to every token at rate 1/V: Q = 11^T/V - I (SEDD's normalisation).

    p_sigma(x_t = y | x0) = e^-sigma [y = x0] + (1 - e^-sigma)/V; the prior is uniform.  The graph
    has no mask: V counts real tokens only, ids 0..V-1, and a uniform model never sees a mask id.
    """

    def __init__(self, vocab_size: int):
        if vocab_size < 2:
            raise DlmError(f"uniform graph needs vocab_size >= 2, got {vocab_size}")
        self.vocab_size = vocab_size

    def transition(self, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        stay = _col(torch.exp(-sigma), 3)
        return stay * F.one_hot(x0, self.vocab_size).to(sigma.dtype) + (1 - stay) / self.vocab_size

    def transp_transition(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.transition(x, sigma)  # Q is symmetric

    def staggered_score(self, x: torch.Tensor, log_score: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = score_ratios(x, log_score)
        grow = _col(torch.exp(sigma), 3).to(s.dtype)
        return grow * s + (1 - grow) / self.vocab_size * s.sum(-1, keepdim=True)

    def rate_into(self, x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return (1 - F.one_hot(x, self.vocab_size).to(dtype)) / self.vocab_size

    def sample_forward(self, x0, sigma, generator, clean_mask=None):
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        move = u < _col(-torch.expm1(-sigma.double()), 2)
        if clean_mask is not None:
            move &= ~clean_mask
        fresh = torch.randint(self.vocab_size, x0.shape, generator=generator, device=x0.device)
        return torch.where(move, fresh, x0)

    def sample_prior(self, batch, length, generator):
        return torch.randint(self.vocab_size, (batch, length), generator=generator, device=generator.device)

    def prior_log_prob(self, x):
        return torch.full((x.shape[0],), -x.shape[1] * math.log(self.vocab_size), dtype=torch.float64, device=x.device)
