"""SEDD (Lou, Meng, Ermon 2024): log concrete scores trained by denoising score entropy.

Two graphs: ``sedd_absorb`` (tokens jump to the mask; log-linear schedule) and ``sedd_uniform``
(tokens jump to any token; geometric schedule). The network is conditioned on the total noise
sigma. For the absorbing graph its output is offset by -log(e^sigma - 1) - log(V - 1), as SEDD
does, so that a zero output is already a score of the right size: the probability that a masked
token is uncovered, spread evenly. The score at the current token is fixed to log 1 = 0.

Holding tokens fixed (conditioning) is exact for the absorbing graph. For the uniform graph it is
only approximate, since its score assumes every position may have been noised; with
``diffusion.clean_fraction > 0`` the uniform model is trained with random positions kept clean
and told which (a learned flag embedding), so conditioning on those positions becomes exact.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from dlmkit.diffusion.graphs import Absorbing, Graph, Uniform
from dlmkit.diffusion.likelihood import score_nelbo
from dlmkit.diffusion.schedules import schedule_from_options
from dlmkit.diffusion.score_entropy import dse_loss
from dlmkit.errors import DlmError
from dlmkit.methods.base import Method, SampleOutput, register
from dlmkit.methods.discrete_common import as_cond, check_sampler, training_times
from dlmkit.networks.transformer import BackboneConfig, Transformer
from dlmkit.sampling.discrete import PREDICTORS, sample_sedd

SAMPLE_EPS = 1e-5  # the sampler's last time before the final denoising step


class SEDD(Method):
    """Shared SEDD logic; subclasses choose the graph and the default schedule."""

    extra_options = ("sampler",)
    has_denoiser = True
    default_schedule = "loglinear"

    def __init__(self, vocab_size: int, specials: Any, options: dict[str, Any] | None = None):
        super().__init__(vocab_size, specials, options)
        self.schedule = schedule_from_options(self.options, self.default_schedule)
        self.graph = self.make_graph()

    def make_graph(self) -> Graph:
        raise NotImplementedError

    def scale(self, raw: Tensor, sigma: Tensor) -> Tensor:
        """Network output -> log score, before the current token is set to 0."""
        return raw

    def score_fn(self, net: nn.Module, flags: Tensor | None = None):
        """``score_fn(x_t, sigma)`` -> log concrete scores [B, L, V]."""

        def fn(x_t: Tensor, sigma: Tensor) -> Tensor:
            kwargs = {"flags": flags.expand(x_t.shape[0], -1)} if flags is not None else {}
            raw = net(x_t, cond=as_cond(sigma, x_t), **kwargs).float()  # float32 under bf16 autocast too
            log_score = self.scale(raw, sigma.to(x_t.device))
            if torch.is_grad_enabled():
                return log_score.scatter(-1, x_t.unsqueeze(-1), 0.0)
            return log_score.scatter_(-1, x_t.unsqueeze(-1), 0.0)  # no graph to keep: no [B, L, V] copy

        return fn

    def x0_log_probs(self, net: nn.Module, clean_mask: Tensor | None = None):
        """Tweedie denoising of the concrete score to sigma = 0, normalised, in float64."""
        score = self.score_fn(net, self._flags(clean_mask))

        def fn(x_t: Tensor, sigma: Tensor) -> Tensor:
            probs = self.graph.denoise_probs(x_t, score(x_t, sigma).double(), sigma)
            return (probs / probs.sum(-1, keepdim=True)).log()

        return fn

    def fully_noised(self, x0: Tensor, start: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Positions from ``start`` on drawn from the graph's prior (all mask for absorbing, uniform
        tokens for uniform), at sigma_bar(1)."""
        x_t = x0.clone()
        x_t[:, start:] = self.graph.sample_prior(x0.shape[0], x0.shape[1] - start, generator).to(x0.device)
        return x_t, self.schedule.total(torch.ones(x0.shape[0], dtype=torch.float64, device=x0.device))

    def clean_positions(self, x0: Tensor, generator: torch.Generator) -> Tensor | None:
        return None

    def loss(self, net: nn.Module, x0: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        t = training_times(self.options, x0.shape[0], generator)
        clean = self.clean_positions(x0, generator)
        flags = clean.long() if clean is not None else None
        per_seq = dse_loss(self.score_fn(net, flags), self.graph, self.schedule, x0, t, generator, clean)
        return per_seq.mean() / x0.shape[1], {}

    def _flags(self, clean_mask: Tensor | None) -> Tensor | None:
        return None

    @torch.no_grad()
    def nll(self, net, x0, *, generator, n_samples=1, clean_mask=None, estimator="mc") -> tuple[Tensor, Tensor]:
        if estimator == "count":
            raise DlmError(f"the count estimator needs a time-free masked denoiser (mdlm, bd3lm); {self.kind} is told the noise level")
        fn = self.score_fn(net, self._flags(clean_mask))
        est = score_nelbo(fn, self.graph, self.schedule, x0, generator=generator, n=n_samples, method=estimator, clean_mask=clean_mask)
        return est.nll, est.stderr

    @torch.no_grad()
    def sample(self, net, batch, length, *, steps, generator, condition=None, **options: Any) -> SampleOutput:
        """Euler or analytic (Tweedie tau-leaping, default) predictor, then a final denoising step."""
        predictor = check_sampler(options.get("sampler") or self.options.get("sampler") or "analytic", tuple(PREDICTORS), self.kind)
        flags = self._flags(condition.mask(length)[None].to(generator.device)) if condition is not None else None
        out = sample_sedd(
            self.score_fn(net, flags), self.graph, self.schedule, batch, length, steps,
            generator=generator, predictor=predictor, eps=SAMPLE_EPS, condition=condition,
        )
        return SampleOutput(out.tokens, out.nfe)


@register
class SEDDAbsorb(SEDD):
    kind = "sedd_absorb"

    def make_graph(self) -> Graph:
        return Absorbing(self.vocab_size, self.specials.mask)

    def scale(self, raw: Tensor, sigma: Tensor) -> Tensor:
        esigm1_log = torch.where(sigma < 0.5, torch.expm1(sigma), sigma.exp() - 1).log()
        shift = (esigm1_log + math.log(self.vocab_size - 1)).to(raw.dtype)[:, None, None]
        return raw - shift if torch.is_grad_enabled() else raw.sub_(shift)  # one [B, L, V] pass


@register
class SEDDUniform(SEDD):
    kind = "sedd_uniform"
    default_schedule = "geometric"

    def make_graph(self) -> Graph:
        return Uniform(self.vocab_size)

    @property
    def clean_fraction(self) -> float:
        return float(self.options.get("clean_fraction", 0.0))

    def build_network(self, cfg: BackboneConfig) -> nn.Module:
        if self.clean_fraction > 0:
            cfg.n_flags = 2
        return Transformer(cfg)

    def clean_positions(self, x0: Tensor, generator: torch.Generator) -> Tensor | None:
        """Half the sequences keep no clean position; the others keep each with ``clean_fraction``."""
        if self.clean_fraction <= 0:
            return None
        u = torch.rand(x0.shape, generator=generator, device=x0.device)
        some = torch.rand(x0.shape[0], 1, generator=generator, device=x0.device) < 0.5
        return (u < self.clean_fraction) & some

    def _flags(self, clean_mask: Tensor | None) -> Tensor | None:
        return clean_mask.long() if clean_mask is not None and self.clean_fraction > 0 else None
