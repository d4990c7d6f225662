"""Masked diffusion (MDLM, Sahoo et al. 2024): SUBS-parameterised x0 logits on the absorbing process.

As in MDLM's default, the network is not told the noise level: under masking the posterior
p(x0 | x_t) does not depend on it, and a time-free denoiser is what makes the cached sampler
(which skips the network while no token changed) return exactly the plain sampler's output.
Training minimises the continuous-time NELBO; ``nll`` is its Monte-Carlo upper bound.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dlmkit.diffusion.likelihood import masked_count_nelbo, masked_nelbo
from dlmkit.diffusion.masked import masked_loss, subs_log_probs, subs_masked_nll
from dlmkit.diffusion.schedules import schedule_from_options
from dlmkit.errors import DlmError
from dlmkit.methods.base import Method, SampleOutput, register
from dlmkit.methods.discrete_common import as_cond, check_sampler, training_times
from dlmkit.sampling.discrete import sample_masked
from dlmkit.sampling.masked_kernels import MASKED_KERNELS


def samplers() -> tuple[str, ...]:
    """``cached`` (the ancestral kernel, network skipped while nothing changed) and every registered kernel."""
    return ("cached",) + tuple(MASKED_KERNELS)


@register
class MaskedDiffusion(Method):
    kind = "mdlm"
    time_conditioned = False
    has_denoiser = True
    extra_options = ("sampler", "temperature", "top_p")

    def __init__(self, vocab_size: int, specials: Any, options: dict[str, Any] | None = None):
        super().__init__(vocab_size, specials, options)
        self.schedule = schedule_from_options(self.options, "loglinear")
        self.mask_id = specials.mask

    def logits(self, net: nn.Module, x_t: Tensor, sigma: Tensor) -> Tensor:
        """The network's x0 logits [B, L, V] in float32 (time-free: sigma is not used)."""
        return net(x_t).float()

    def denoiser(self, net: nn.Module):
        """``denoise_fn(x_t, sigma)`` -> SUBS log p(x0 | x_t) [B, L, V]."""
        return lambda x_t, sigma: subs_log_probs(self.logits(net, x_t, sigma), x_t, self.mask_id)

    def x0_log_probs(self, net: nn.Module, clean_mask: Tensor | None = None):
        """The SUBS denoiser (clean positions are the unmasked ones, carried over)."""
        return self.denoiser(net)

    def fully_noised(self, x0: Tensor, start: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Every position from ``start`` on masked (the absorbing state), at sigma_bar(1)."""
        x_t = x0.clone()
        x_t[:, start:] = self.mask_id
        return x_t, self.schedule.total(torch.ones(x0.shape[0], dtype=torch.float64, device=x0.device))

    def masked_nll(self, net: nn.Module):
        """``nll_fn(x_t, sigma, x0)``: the SUBS NLL summed over masked positions, scored on those rows alone."""
        return lambda x_t, sigma, x0: subs_masked_nll(self.logits(net, x_t, sigma), x0, x_t, self.mask_id)

    def loss(self, net: nn.Module, x0: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        t = training_times(self.options, x0.shape[0], generator)
        per_seq = masked_loss(self.denoiser(net), self.schedule, x0, t, self.mask_id, self.vocab_size, generator)
        return per_seq.mean() / x0.shape[1], {}

    @torch.no_grad()
    def nll(self, net, x0, *, generator, n_samples=1, clean_mask=None, estimator="mc") -> tuple[Tensor, Tensor]:
        """The NELBO by ``mc``, ``quadrature`` or, for the time-free denoiser, ``count``
        (:func:`masked_count_nelbo`: the noise level integrated exactly)."""
        if estimator == "count":
            if self.time_conditioned:
                raise DlmError(f"the count estimator needs a time-free denoiser; {self.kind} is told the noise level")
            est = masked_count_nelbo(self.denoiser(net), self.mask_id, x0, generator=generator, n=n_samples,
                                     clean_mask=clean_mask, nll_fn=self.masked_nll(net))
            return est.nll, est.stderr
        est = masked_nelbo(self.denoiser(net), self.mask_id, self.vocab_size, self.schedule, x0, generator=generator, n=n_samples,
                           method=estimator, clean_mask=clean_mask, nll_fn=self.masked_nll(net))
        return est.nll, est.stderr

    @torch.no_grad()
    def sample(self, net, batch, length, *, steps, generator, condition=None, **options: Any) -> SampleOutput:
        """Ancestral sampling; ``sampler="cached"`` (default) skips the network while nothing changed.

        Any registered masked kernel (``ancestral``, ``confidence``, ...) runs by its name, uncached.
        """
        sampler = check_sampler(options.get("sampler") or self.options.get("sampler") or "cached", samplers(), self.kind)
        kernel = "ancestral" if sampler == "cached" else sampler
        out = sample_masked(
            self.denoiser(net), self.mask_id, self.vocab_size, self.schedule, batch, length, steps,
            generator=generator, condition=condition, kernel=kernel,
            cache=sampler == "cached",
            temperature=options.get("temperature", 1.0), top_p=options.get("top_p", 1.0),
        )
        return SampleOutput(out.tokens, out.nfe)


@register
class MaskedDiffusionSigma(MaskedDiffusion):
    """MDLM with ``time_conditioning: true``: the network is told the total noise sigma(t).

    The cached sampler is exact only for a time-free denoiser, so the default sampler here is
    ``ancestral``.
    """

    kind = "mdlm_sigma"
    time_conditioned = True

    def logits(self, net: nn.Module, x_t: Tensor, sigma: Tensor) -> Tensor:
        return net(x_t, cond=as_cond(sigma, x_t).reshape(-1).expand(x_t.shape[0])).float()

    def sample(self, net, batch, length, *, steps, generator, condition=None, **options: Any) -> SampleOutput:
        options["sampler"] = options.get("sampler") or self.options.get("sampler") or "ancestral"
        return super().sample(net, batch, length, steps=steps, generator=generator, condition=condition, **options)
