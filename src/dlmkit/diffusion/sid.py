"""The loss math of DLM-One (Chen, Zhang, Zhou 2025): score identity distillation (SiD, Zhou et al.
2024) plus the adversarial terms of SiDA (Zhou et al. 2024), in the x0 (denoiser) parameterisation.

Pure functions over tensors and callables; no network lives here, so every loss is testable with
exact (analytic) denoisers.

Notation (DiffuSeq's discrete Gaussian process, ``dlmkit.diffusion.gaussian``):
``x_t = a_t x_0 + sigma_t eps`` at target positions, ``a_t = sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)``,
source (condition) positions clean. ``f_phi`` is the frozen teacher denoiser, ``f_psi`` the
fake-score denoiser (trained on generator outputs), ``x_g = G_theta(c, z)`` the generator output.

* Eq. 3 (psi, denoising score matching on generated samples):
  ``L_dsm(psi) = E_t || f_psi(x_t, t) - sg(x_g) ||^2`` with ``x_t ~ q(x_t | sg(x_g))``.
* Eq. 4 (theta, SiD): with ``d = f_phi(x_t, t) - f_psi(x_t, t)`` and weight ``w_t = omega_t a_t^2 / sigma_t^4``,
  ``L_sid(theta) = w_t [ (1 - mu) ||d||^2 + d . (f_psi(x_t, t) - x_g) ]``. Gradients flow through
  ``x_g`` and through ``x_t = a_t x_g + sigma_t eps`` into both denoisers (whose parameters are
  not updated). Equivalently ``d . (f_phi - x_g) - mu ||d||^2``.
* Eq. 5 (psi as discriminator, Diffusion-GAN style BCE on forward-diffused pairs):
  ``L_adv(psi) = -log D(x_t^real) - log(1 - D(x_t^fake))`` = ``softplus(-l_real) + softplus(l_fake)``
  with ``D = sigmoid(l)``: real pairs are labelled 1, generated pairs 0.
* Eq. 6 (theta, non-saturating generator loss): ``L_adv(theta) = -log D(x_t^fake)`` = ``softplus(-l_fake)``.

The weight ``omega_t``: ``weighting="sid"`` (default, SiD's choice) takes
``omega_t = sigma_t^4 / a_t^2 / mean|x_g - f_phi(x_t, t)|`` (no gradient), so that
``w_t = 1 / mean|x_g - f_phi|`` per sequence (over target positions); ``"snr"`` takes ``omega_t = 1``
(the raw ``a_t^2 / sigma_t^4``); ``"unit"`` takes ``w_t = 1``.

Scale conventions (they only matter through the balance ``a_sd`` : ``b_adv`` and gradient
clipping): SiD sums its loss over every element of a sample; here a row's sum over target
elements is divided by the row's number of target positions, i.e. the reported loss is SiD's
divided by that count. The adversarial terms are plain per-row BCE; SiDA's released code instead
batch-averages the BCE and multiplies it by the same ``C / ||x_g - f_phi||_1`` factor as the SiD
term, so a given ``b_adv`` here is not the same strength as SiDA's adversarial weight.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

from dlmkit.diffusion.gaussian import GaussianDiffusion, X0Fn, masked_mean
from dlmkit.errors import DlmError

WEIGHTINGS = ("sid", "snr", "unit")


def sample_t(batch: int, t_min: int, t_max: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """``t ~ U{t_min, ..., t_max}`` (inclusive), LongTensor ``[batch]``."""
    if not 0 <= t_min <= t_max:
        raise DlmError(f"need 0 <= t_min <= t_max, got [{t_min}, {t_max}]")
    gen_dev = generator.device if generator is not None else torch.device(device)
    return torch.randint(t_min, t_max + 1, (batch,), generator=generator, device=gen_dev).to(device)


def sid_weight(diffusion: GaussianDiffusion, t: Tensor, x_g: Tensor, f_phi: Tensor, mask: Tensor | None, weighting: str = "sid") -> Tensor:
    """``w_t = omega_t a_t^2 / sigma_t^4`` per row ``[B]`` (no gradient), see the module notes."""
    if weighting not in WEIGHTINGS:
        raise DlmError(f"unknown SiD weighting {weighting!r} ({', '.join(WEIGHTINGS)})")
    with torch.no_grad():
        if weighting == "sid":
            return 1.0 / masked_mean((x_g - f_phi).abs(), mask).clamp_min(1e-5)
        if weighting == "unit":
            return torch.ones(x_g.shape[0], dtype=x_g.dtype, device=x_g.device)
        abar = diffusion.alphas_cumprod.to(x_g.device)[t.to(x_g.device)].to(x_g.dtype)
        return abar / (1.0 - abar) ** 2


def sid_loss_terms(x_g: Tensor, f_phi: Tensor, f_psi: Tensor, weight: Tensor, mask: Tensor | None, mu: float) -> Tensor:
    """Eq. 4 per row ``[B]``: ``w [(1 - mu)||d||^2 + d.(f_psi - x_g)]``, ``d = f_phi - f_psi``, summed
    over target positions and embedding dims, divided by the number of target positions."""
    d = f_phi - f_psi
    per = (1.0 - mu) * d * d + d * (f_psi - x_g)
    return weight * masked_mean(per, mask) * per.shape[-1]  # the mean over positions and dims, times dims


def sid_generator_loss(
    diffusion: GaussianDiffusion,
    x_g: Tensor,
    teacher: X0Fn,
    fake: X0Fn,
    t: Tensor,
    mask: Tensor | None,
    *,
    mu: float = 1.2,
    weighting: str = "sid",
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 4 at times ``t`` for generator outputs ``x_g`` (with their graph). Returns the per-row loss
    ``[B]`` and the pieces (``x_t``, ``f_phi``, ``f_psi``, ``w``) for logging and the adversarial term."""
    x_t = diffusion.q_sample(x_g, t, mask, noise=noise, generator=generator)  # keeps the graph through x_g
    f_phi = teacher(x_t, t)
    f_psi = fake(x_t, t)
    w = sid_weight(diffusion, t, x_g, f_phi, mask, weighting)
    return sid_loss_terms(x_g, f_phi, f_psi, w, mask, mu), {"x_t": x_t, "f_phi": f_phi, "f_psi": f_psi, "w": w}


def dsm_loss(f_psi: Tensor, x_g: Tensor, mask: Tensor | None) -> Tensor:
    """Eq. 3 per row ``[B]``: ``||f_psi(x_t, t) - sg(x_g)||^2``, mean over target positions and dims."""
    return masked_mean((f_psi - x_g.detach()) ** 2, mask)


def discriminator_loss(logit_real: Tensor, logit_fake: Tensor) -> Tensor:
    """Eq. 5: ``-log D(real) - log(1 - D(fake))`` with ``D = sigmoid(logit)``; per row ``[B]``."""
    return F.softplus(-logit_real) + F.softplus(logit_fake)


def generator_adv_loss(logit_fake: Tensor) -> Tensor:
    """Eq. 6: ``-log D(fake)`` (non-saturating); per row ``[B]``."""
    return F.softplus(-logit_fake)
