"""Per-sequence upper bounds on -log p(x0) in nats, and dataset perplexities.

The bound, in the noise level sigma rather than t (the integral is invariant to the schedule), is

    -log p(x0) <= E_{x ~ q_sigma0(.|x0)}[-log p_theta(x0 | x)]          reconstruction, if sigma0 > 0
                  + int_{sigma0}^{inf} E_{x ~ q_sigma(.|x0)}[ f(x0, x, sigma) ] d sigma,

with f = sum_i DSE_i (SEDD) or sum_{i masked} -log p_theta(x0^i | x) / (e^sigma - 1) (MDLM).  Ends:
* start: sigma0 = sigma_bar(0); it is 0 for log-linear (no reconstruction term); for the geometric
  schedule sigma0 = sigma_min > 0 and the model's final denoiser (factorised over positions) pays
  the reconstruction term, as the sampler's final denoising step does.
* finish: both graphs reach their prior only as sigma -> inf (absorbing with eps > 0 keeps each token
  with probability eps at t=1, so KL(q_1 || all-mask) is infinite).  Rather than that KL, the integral
  is carried on past sigma1 = sigma_bar(1) to infinity through sigma = sigma1 - log(1 - u), u in [0, 1)
  (the "tail"; e^-sigma is linear in u); the prior term is then exactly 0.  The bound is for the
  continuous-time model whose score is the network's at every sigma.
With the exact score/denoiser and sigma0 = 0 the bound equals -log p(x0) for every sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from dlmkit.diffusion.graphs import Absorbing, Graph
from dlmkit.diffusion.masked import DenoiseFn, MaskedNllFn, masked_nll_terms
from dlmkit.diffusion.schedules import NoiseSchedule
from dlmkit.diffusion.score_entropy import ScoreFn, denoising_score_entropy
from dlmkit.errors import DlmError

PointFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
"""(x0 [B, L], sigma [B], generator) -> (f per unit sigma [B], reconstruction NLL [B]) at one x ~ q_sigma."""

TAIL_SHARE = REC_SHARE = 1.0 / 16.0  # share of Monte-Carlo draws spent on the tail / reconstruction


def score_terms(
    log_score: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor, graph: Graph,
    clean_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SEDD: (sum_i DSE_i, -sum_i log p_theta(x0^i | x_t) from Tweedie denoising), per sequence.

    Positions in ``clean_mask`` are given (never noised) and left out of both sums.
    """
    diff = denoising_score_entropy(log_score, x0, x_t, sigma, graph, clean_mask).sum(-1)
    probs = graph.denoise_probs(x_t, log_score, sigma.to(log_score.dtype))
    probs = probs / probs.sum(-1, keepdim=True)
    rec = -torch.log(probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1))
    if clean_mask is not None:
        rec = rec.masked_fill(clean_mask, 0.0)
    return diff, rec.sum(-1)


def masked_terms(
    log_p_x0: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor, mask_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MDLM: (masked NLL / (e^sigma - 1), masked NLL), per sequence."""
    rec = masked_nll_terms(log_p_x0, x0, x_t, mask_id)
    return rec / torch.expm1(sigma).to(rec.dtype), rec


def score_point(score_fn: ScoreFn, graph: Graph, clean_mask: torch.Tensor | None = None) -> PointFn:
    """PointFn drawing x_t from the graph (``clean_mask`` positions kept) and calling the score network once."""
    def point(x0: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator):
        x_t = graph.sample_forward(x0, sigma, generator, clean_mask)
        return score_terms(score_fn(x_t, sigma), x0, x_t, sigma, graph, clean_mask)
    return point


def masked_point(
    denoise_fn: DenoiseFn, mask_id: int, vocab_size: int, clean_mask: torch.Tensor | None = None,
    nll_fn: MaskedNllFn | None = None,
) -> PointFn:
    """PointFn masking x0 (never at ``clean_mask`` positions) and calling the SUBS denoiser once.

    ``nll_fn``, when given, computes the masked NLL directly (e.g. on the masked rows alone).
    """
    graph = Absorbing(vocab_size, mask_id)

    def point(x0: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator):
        x_t = graph.sample_forward(x0, sigma, generator, clean_mask)
        if nll_fn is not None:
            rec = nll_fn(x_t, sigma, x0)
            return rec / torch.expm1(sigma).to(rec.dtype), rec
        return masked_terms(denoise_fn(x_t, sigma), x0, x_t, sigma, mask_id)
    return point


@dataclass
class BoundEstimate:
    """Per-sequence upper bound on -log p(x0) (nats), its standard error, and network calls used."""

    nll: torch.Tensor
    stderr: torch.Tensor
    nfe: int


def _gauss_legendre(n: int) -> tuple[list[float], list[float]]:
    """Nodes and weights on (0, 1)."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return ((nodes + 1) / 2).tolist(), (weights / 2).tolist()


def quadrature_rule(sigma0: float, n: int) -> tuple[list[float], list[float]]:
    """Nodes sigma_k and weights w_k with sum_k w_k f(sigma_k) ~ int_{sigma0}^inf f(sigma) d sigma.

    Gauss-Legendre in w, where 1 - e^{-sigma} = w^2, w from (1 - e^{-sigma0})^(1/2) to 1.  In
    a = e^{-sigma} the integrand is smooth at sigma -> inf (a polynomial for the absorbing graph),
    but the uniform graph's integrand grows like -log sigma as sigma -> 0; w^2 turns that into
    w log w, which Gauss-Legendre integrates to O(n^-4) and, since every even derivative of
    -w log w is negative, from above: the bound stays an upper bound.  The schedule plays no part
    (the integral over sigma is invariant to it) except through sigma0 = sigma_bar(0).
    """
    w0 = math.sqrt(-math.expm1(-sigma0))
    nodes, weights = [], []
    for z, wz in zip(*_gauss_legendre(n)):
        w = w0 + (1.0 - w0) * z
        nodes.append(-math.log1p(-w * w))
        weights.append(wz * (1.0 - w0) * 2.0 * w / (1.0 - w * w))  # d sigma / d w = 2w / (1 - w^2)
    return nodes, weights


def _ends(schedule: NoiseSchedule) -> tuple[float, float]:
    """(sigma_bar(0), sigma_bar(1)) in float64."""
    ends = schedule.total(torch.tensor([0.0, 1.0], dtype=torch.float64))
    return float(ends[0]), float(ends[1])


def _mc_draw(point: PointFn, schedule: NoiseSchedule, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One unbiased estimate per sequence: a single v ~ U[0, 1) picks reconstruction, main or tail."""
    sigma0, sigma1 = _ends(schedule)
    p_rec = REC_SHARE if sigma0 > 0 else 0.0
    p_tail = TAIL_SHARE if math.isfinite(sigma1) else 0.0
    p_main = 1.0 - p_rec - p_tail
    v = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64, device=x0.device)
    in_rec, in_tail = v < p_rec, v >= 1.0 - p_tail
    t = ((v - p_rec) / p_main).clamp(0.0, 1.0)
    u = ((v - 1.0 + p_tail) / max(p_tail, 1e-300)).clamp(0.0, 1.0 - 1e-12)
    sigma = torch.where(in_rec, sigma0, torch.where(in_tail, sigma1 - torch.log1p(-u), schedule.total(t)))
    diff, rec = (z.double() for z in point(x0, sigma, generator))
    main = schedule.rate(t) * diff / p_main
    tail = diff / (1.0 - u) / max(p_tail, 1e-300)
    return torch.where(in_rec, rec / max(p_rec, 1e-300), torch.where(in_tail, tail, main))


def _quadrature(point: PointFn, schedule: NoiseSchedule, x0: torch.Tensor, generator: torch.Generator, n: int) -> tuple[torch.Tensor, int]:
    """``quadrature_rule`` over [sigma_bar(0), inf) plus the reconstruction term; one x_t draw per node."""
    batch = x0.shape[0]
    sigma0, _ = _ends(schedule)
    total, calls = torch.zeros(batch, dtype=torch.float64, device=x0.device), 0

    def at(sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal calls
        calls += 1
        return tuple(z.double() for z in point(x0, torch.full((batch,), sigma, dtype=torch.float64, device=x0.device), generator))

    if sigma0 > 0:
        total += at(sigma0)[1]
    for sigma, w in zip(*quadrature_rule(sigma0, n)):
        total += w * at(sigma)[0]
    return total, calls


def nelbo(
    point: PointFn, schedule: NoiseSchedule, x0: torch.Tensor, *, generator: torch.Generator, n: int = 128,
    method: str = "mc", repeats: int = 1,
) -> BoundEstimate:
    """Upper bound on -log p(x0) per sequence.

    ``mc``: mean of n single-call unbiased draws (t ~ U, 1/16 of draws on the tail and 1/16 on the
    reconstruction when present, importance-weighted), stderr = std / sqrt(n).
    ``quadrature``: the n nodes of ``quadrature_rule`` over the noise level (+ the reconstruction
    term), deterministic in sigma but with one x_t draw per node; ``repeats`` >= 2 gives a stderr
    from fresh draws (else NaN).
    """
    if n < 1 or repeats < 1:
        raise DlmError(f"need n >= 1 and repeats >= 1, got n={n}, repeats={repeats}")
    if method == "mc":
        draws = torch.stack([_mc_draw(point, schedule, x0, generator) for _ in range(n)])
        nfe = n
    elif method == "quadrature":
        runs = [_quadrature(point, schedule, x0, generator, n) for _ in range(repeats)]
        draws, nfe = torch.stack([r[0] for r in runs]), sum(r[1] for r in runs)
    else:
        raise DlmError(f"unknown likelihood method {method!r}; choose 'mc' or 'quadrature'")
    k = draws.shape[0]
    stderr = draws.std(0) / math.sqrt(k) if k > 1 else torch.full_like(draws[0], math.nan)
    return BoundEstimate(draws.mean(0), stderr, nfe)


def score_nelbo(
    score_fn: ScoreFn, graph: Graph, schedule: NoiseSchedule, x0: torch.Tensor, *, generator: torch.Generator,
    clean_mask: torch.Tensor | None = None, **kwargs,
) -> BoundEstimate:
    """``nelbo`` for a SEDD score model (kwargs: n, method, repeats).

    With ``clean_mask`` it bounds -log p(x0 at the other positions | x0 at the clean ones).
    """
    return nelbo(score_point(score_fn, graph, clean_mask), schedule, x0, generator=generator, **kwargs)


def masked_nelbo(
    denoise_fn: DenoiseFn, mask_id: int, vocab_size: int, schedule: NoiseSchedule, x0: torch.Tensor, *,
    generator: torch.Generator, clean_mask: torch.Tensor | None = None, nll_fn: MaskedNllFn | None = None, **kwargs,
) -> BoundEstimate:
    """``nelbo`` for an MDLM SUBS denoiser (kwargs: n, method, repeats); ``clean_mask``, ``nll_fn`` as above."""
    return nelbo(masked_point(denoise_fn, mask_id, vocab_size, clean_mask, nll_fn), schedule, x0, generator=generator, **kwargs)


def masked_count_nelbo(
    denoise_fn: DenoiseFn, mask_id: int, x0: torch.Tensor, *, generator: torch.Generator, n: int = 8,
    clean_mask: torch.Tensor | None = None, nll_fn: MaskedNllFn | None = None,
) -> BoundEstimate:
    """The masked NELBO with its integral over the noise level done exactly, for a time-free denoiser.

    With K free positions and P(x_t^i masked) = 1 - a independently, int_0^1 (1 - a)^(k-1) a^(K-k) da
    = 1 / (k C(K, k)) turns the bound into  sum_{k=1}^{K} (1/k) E_{|m| = k}[sum_{i in m} -log p(x0^i | x0
    with m masked)]  (the any-order autoregressive form).  Each of the n draws takes k from its
    stratum of U{1..K} and one random set m of k free positions, weighted K/k: unbiased, and with
    no 1/t weight its variance stays small for short continuations, where uniform t is heavy-tailed.
    Exact only when the denoiser ignores sigma (MDLM's default) and sigma_bar(0) = 0.
    """
    if n < 1:
        raise DlmError(f"need n >= 1, got n={n}")
    free = torch.ones_like(x0, dtype=torch.bool) if clean_mask is None else ~clean_mask
    k_free = free.sum(-1)
    if (k_free == 0).any():
        raise DlmError("every sequence needs at least one position to score")
    draws = []
    for j in range(n):
        v = (j + torch.rand(x0.shape[0], generator=generator, dtype=torch.float64, device=x0.device)) / n
        k = (v * k_free).floor().long().clamp_max(k_free - 1) + 1
        keys = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device).masked_fill(~free, 2.0)
        rank = keys.argsort(-1).argsort(-1)
        x_t = torch.where(rank < k[:, None], mask_id, x0)
        sigma = -torch.log1p(-k / (k_free + 1.0))  # a matching noise level; a time-free denoiser ignores it
        nll = nll_fn(x_t, sigma, x0) if nll_fn is not None else masked_nll_terms(denoise_fn(x_t, sigma), x0, x_t, mask_id)
        draws.append(k_free / k * nll.double())
    draws = torch.stack(draws)
    stderr = draws.std(0) / math.sqrt(n) if n > 1 else torch.full_like(draws[0], math.nan)
    return BoundEstimate(draws.mean(0), stderr, n)


@dataclass
class Perplexity:
    """Dataset aggregates of per-sequence NLL bounds."""

    nll_per_token: float  # sum of NLL / sum of tokens
    ppl: float  # exp(nll_per_token): the default
    ppl_seq_mean: float  # mean over sequences of exp(NLL_i / n_i): the SEDD paper's way


def aggregate_nll(nll: torch.Tensor, n_tokens: torch.Tensor | int) -> Perplexity:
    """Perplexities from per-sequence NLL [N] (nats) and token counts [N] (or one count for all)."""
    nll = nll.double()
    counts = torch.as_tensor(n_tokens, dtype=torch.float64).expand_as(nll)
    per_token = float(nll.sum() / counts.sum())
    return Perplexity(per_token, math.exp(per_token), float(torch.exp(nll / counts).mean()))
