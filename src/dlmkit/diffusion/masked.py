"""Masked diffusion (MDLM, Sahoo et al. 2024) with the SUBS parameterisation.

alpha(t) = exp(-sigma_bar(t)) is the probability that a token is still clean.  The continuous-time
NELBO is  int_0^1 E[ sum_{i: x_t^i = mask} -alpha'(t) / (1 - alpha(t)) log p_theta(x0^i | x_t) ] dt
with -alpha'/(1 - alpha) = sigma_bar'(t) / (e^{sigma_bar(t)} - 1).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from dlmkit.diffusion.graphs import Absorbing
from dlmkit.diffusion.schedules import NoiseSchedule

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def subs_log_probs(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """log p_theta(x0 | x_t) under SUBS: never predict the mask; carry unmasked tokens over (one-hot)."""
    logits = logits.clone()
    logits[..., mask_id] = -torch.inf
    log_probs = torch.log_softmax(logits, dim=-1)
    clean = (x_t != mask_id).unsqueeze(-1)
    out = log_probs.masked_fill(clean, -torch.inf)
    # a clean position gets log 1 at its token; a masked one rewrites -inf at the mask id
    return out.scatter(-1, x_t.unsqueeze(-1), torch.where(clean, 0.0, -torch.inf).to(out.dtype))


MaskedNllFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(x_t [B, L], sigma [B], x0 [B, L]) -> sum over masked positions of -log p_theta(x0^i | x_t), per sequence [B]."""


def subs_masked_nll(logits: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """``masked_nll_terms(subs_log_probs(logits, x_t, mask_id), x0, x_t, mask_id)`` on the masked rows alone.

    SUBS carries clean positions over and never predicts the mask, so a masked position's NLL is
    logsumexp over the non-mask logits minus the logit of x0^i; clean rows cost nothing.
    """
    masked = x_t == mask_id
    rows = logits[masked].float()  # [M, V]: a copy, so the mask column can be dropped in place
    rows[:, mask_id] = -torch.inf
    nll = F.cross_entropy(rows, x0[masked], reduction="none")
    seq = masked.nonzero()[:, 0]
    return torch.zeros(x0.shape[0], dtype=nll.dtype, device=nll.device).index_add_(0, seq, nll)


def masked_nll_terms(log_p_x0: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """sum over masked positions of -log p_theta(x0^i | x_t), per sequence [B]."""
    nll = -log_p_x0.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    return torch.where(x_t == mask_id, nll, torch.zeros_like(nll)).sum(-1)


def masked_loss(
    denoise_fn: DenoiseFn, schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, mask_id: int,
    vocab_size: int, generator: torch.Generator,
) -> torch.Tensor:
    """NELBO integrand per sequence [B] at x_t ~ q(. | x0, t): sigma_bar'(t)/(e^sigma_bar - 1) * masked NLL."""
    sigma = schedule.total(t)
    x_t = Absorbing(vocab_size, mask_id).sample_forward(x0, sigma, generator)
    terms = masked_nll_terms(denoise_fn(x_t, sigma), x0, x_t, mask_id)
    return (schedule.rate(t) / torch.expm1(sigma)).to(terms.dtype) * terms


def ancestral_probs(
    log_p_x0: torch.Tensor, x_t: torch.Tensor, mask_id: int, alpha_t: float, alpha_s: float,
) -> torch.Tensor:
    """MDLM's step q(x_s^i | x_t, x0 ~ p_theta), s < t, per position [B, L, V].

    A clean token stays; a masked one unmasks with probability (alpha_s - alpha_t)/(1 - alpha_t) to a
    value drawn from p_theta(x0^i | x_t), and otherwise stays masked. The alphas may be per-row
    tensors [B, 1] (rows at different times).
    """
    move = (alpha_s - alpha_t) / (1.0 - alpha_t)
    if torch.is_tensor(move):  # one step per row: alphas [B, 1]
        move = move.to(log_p_x0.dtype).unsqueeze(-1)
    stay_mask = F.one_hot(torch.tensor(mask_id, device=x_t.device), log_p_x0.shape[-1]).to(log_p_x0.dtype)
    masked_row = move * log_p_x0.exp() + (1.0 - move) * stay_mask
    keep = F.one_hot(x_t, log_p_x0.shape[-1]).to(log_p_x0.dtype)
    return torch.where((x_t == mask_id).unsqueeze(-1), masked_row, keep)
