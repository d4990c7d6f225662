"""Samplers for discrete diffusion, their exact output distributions, and the SEDD predictor registry.

SEDD (score_fn -> log concrete scores): time grid t_k = 1 - k (1 - eps)/steps, k = 0..steps; each
step maps x at sigma_bar(t_k) towards sigma_bar(t_{k+1}) with a predictor, then a final denoising
step draws x0 from Tweedie at sigma_bar(eps) (SEDD's ``denoise``): NFE = steps + 1.  As in SEDD's
``sampling.py``, ``analytic`` removes the noise sigma_bar(t_k) - sigma_bar(t_{k+1}) exactly (Tweedie
tau-leaping) and ``euler`` takes the first-order step (t_k - t_{k+1}) sigma(t_k) of the reverse CTMC.
Masked (denoise_fn -> SUBS log p(x0 | x_t)): a registered step kernel (``masked_kernels``; MDLM's
ancestral steps by default) on t_k = 1 - k/steps with alpha(0) := 1, so the last step unmasks
everything: NFE <= steps (fewer with ``cache``).  Sampler and enumeration share each plan and kernel.
Every draw is made in float64 with an explicit generator (Gumbel-max; SEDD steps on the absorbing
and uniform graphs first draw per row whether the token moves, see ``sedd_moves``); conditioned
positions are written before the first step and after every step.  The ``*_output_distribution``
functions push the exact start distribution through the same step kernels over all V^L sequences
(tiny V, L only).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from dlmkit.diffusion.graphs import Absorbing, Graph, Uniform
from dlmkit.diffusion.masked import DenoiseFn
from dlmkit.diffusion.schedules import NoiseSchedule
from dlmkit.diffusion.score_entropy import ScoreFn
from dlmkit.errors import DlmError
from dlmkit.registry import Registered
from dlmkit.sampling.categorical import categorical
from dlmkit.sampling.masked_kernels import check_steps, get_masked_kernel
from dlmkit.sampling.sedd_moves import draw_moves

if TYPE_CHECKING:
    from dlmkit.sampling.conditioning import Condition

MAX_ENUMERATED_STATES = 4096


@dataclass
class SampleResult:
    """Final tokens [B, L] and the number of network calls (NFE) made."""

    tokens: torch.Tensor
    nfe: int


def euler_probs(graph: Graph, x: torch.Tensor, log_score: torch.Tensor, dsigma: float) -> torch.Tensor:
    """Euler step: jump x^i -> y with probability dsigma Q[x^i, y] s_y; stay gets the rest (>= 0).

    SEDD's ``EulerPredictor``: dsigma = (t - s) sigma(t), the rate of the schedule at the step's start.
    """
    jump = dsigma * graph.reverse_rate(x, log_score)
    stay = (1.0 - jump.sum(-1, keepdim=True)).clamp_min(0.0)
    return jump.scatter(-1, x.unsqueeze(-1), stay)


def analytic_probs(graph: Graph, x: torch.Tensor, log_score: torch.Tensor, dsigma: float) -> torch.Tensor:
    """Tweedie tau-leaping: p(x_s^i = y | x_t) = (exp(-dQ)^T s)_y exp(dQ)[x^i, y], d = sigma_bar(t) - sigma_bar(s)."""
    return graph.tweedie_probs(x, log_score, torch.full((x.shape[0],), dsigma, dtype=torch.float64, device=x.device))


PREDICTORS: dict[str, type["Predictor"]] = {}
"""name -> SEDD predictor class, filled by subclassing with ``name=``."""


class Predictor(Registered, ABC):
    """A SEDD predictor: the noise each step removes (its plan) and one step's probabilities.

    Registered by subclassing with ``name=``; ``moves`` marks the predictors whose law ``sedd_moves``
    draws row by row on the absorbing and uniform graphs (others use the full categorical draw).
    """

    registry = PREDICTORS
    registry_what = "predictor"
    moves: ClassVar[bool] = False

    def removed(self, schedule: NoiseSchedule, times: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        """The noise each step removes, from the time grid and sigma_bar on it: sigma_bar(t) - sigma_bar(s)."""
        return sigmas[:-1] - sigmas[1:]

    @abstractmethod
    def probs(self, graph: Graph, x: torch.Tensor, log_score: torch.Tensor, dsigma: float) -> torch.Tensor:
        """(x, log score at x, noise removed) -> unnormalised step probabilities [B, L, V]."""


class Euler(Predictor, name="euler"):
    """First-order step of the reverse CTMC at the rate of the step's start (``euler_probs``)."""

    moves = True

    def removed(self, schedule: NoiseSchedule, times: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        return (times[:-1] - times[1:]) * schedule.rate(times[:-1])

    def probs(self, graph: Graph, x: torch.Tensor, log_score: torch.Tensor, dsigma: float) -> torch.Tensor:
        return euler_probs(graph, x, log_score, dsigma)


class Analytic(Predictor, name="analytic"):
    """Tweedie tau-leaping over the exact noise removed (``analytic_probs``)."""

    moves = True

    def probs(self, graph: Graph, x: torch.Tensor, log_score: torch.Tensor, dsigma: float) -> torch.Tensor:
        return analytic_probs(graph, x, log_score, dsigma)


def get_predictor(name: str) -> Predictor:
    """A registered SEDD predictor by name."""
    if name not in PREDICTORS:
        raise DlmError(f"unknown predictor {name!r}; choose one of {', '.join(sorted(PREDICTORS))}")
    return PREDICTORS[name]()


def sedd_plan(schedule: NoiseSchedule, steps: int, eps: float, predictor: str) -> list[tuple[float, float | None]]:
    """(sigma_bar(t), noise removed) per predictor step, then (sigma_bar(eps), None) for the denoising step."""
    check_steps(steps)
    if not 0.0 < eps < 1.0:
        raise DlmError(f"eps must lie in (0, 1), got {eps}")
    times = torch.linspace(1.0, eps, steps + 1, dtype=torch.float64)
    sigmas = schedule.total(times)
    if not math.isfinite(float(sigmas[0])):
        raise DlmError("the schedule's sigma_bar(1) is infinite; SEDD samplers need a finite one (log-linear eps > 0)")
    removed = get_predictor(predictor).removed(schedule, times, sigmas)
    return list(zip(sigmas[:-1].tolist(), removed.tolist())) + [(float(sigmas[-1]), None)]


def sedd_step(
    score_fn: ScoreFn, graph: Graph, predictor: Predictor, x: torch.Tensor, sigma_t: float, dsigma: float | None,
) -> torch.Tensor:
    """Unnormalised step probabilities [B, L, V]; dsigma None is the final denoising step."""
    sigma = torch.full((x.shape[0],), sigma_t, dtype=torch.float64, device=x.device)
    log_score = score_fn(x, sigma).double()
    if dsigma is None:
        return graph.denoise_probs(x, log_score, sigma)
    return predictor.probs(graph, x, log_score, dsigma)


def sample_sedd(
    score_fn: ScoreFn, graph: Graph, schedule: NoiseSchedule, batch: int, length: int, steps: int, *,
    generator: torch.Generator, predictor: str = "analytic", eps: float = 1e-5, condition: Condition | None = None,
) -> SampleResult:
    """Draw [batch, length] sequences with a SEDD predictor from the prior (NFE = steps + 1)."""
    step = get_predictor(predictor)
    plan = sedd_plan(schedule, steps, eps, predictor)
    if condition is not None:
        condition.check(length, graph.vocab_size, getattr(graph, "mask_id", None))
    x = graph.sample_prior(batch, length, generator)
    x = x if condition is None else condition.apply(x)
    fast = step.moves and isinstance(graph, (Absorbing, Uniform))
    for sigma_t, dsigma in plan:
        if fast:  # the same law as the categorical draw below, drawn row by row (see sedd_moves)
            sigma = torch.full((batch,), sigma_t, dtype=torch.float64, device=x.device)
            x = draw_moves(graph, x, score_fn(x, sigma), predictor, sigma_t, dsigma, generator)
        else:
            x = categorical(sedd_step(score_fn, graph, step, x, sigma_t, dsigma), generator)
        x = x if condition is None else condition.apply(x)
    return SampleResult(x, len(plan))


def sample_masked(
    denoise_fn: DenoiseFn, mask_id: int, vocab_size: int, schedule: NoiseSchedule, batch: int, length: int,
    steps: int, *, generator: torch.Generator, condition: Condition | None = None, temperature: float = 1.0,
    top_p: float = 1.0, cache: bool = False, kernel: str = "ancestral",
) -> SampleResult:
    """Masked sampling from all-mask with a registered step ``kernel`` (``masked_kernels``); tokens and NFE.

    ``cache=True`` reuses the last denoiser output while no token changed; the kernels draw the same
    random numbers whether or not the network was called, so this returns exactly the uncached
    samples. That reuse is exact only for a denoiser that ignores sigma, as MDLM's does (the true
    posterior under masking is time-independent).
    """
    step_kernel = get_masked_kernel(kernel, mask_id, temperature=temperature, top_p=top_p)
    plan = step_kernel.plan(schedule, steps)
    if condition is not None:
        condition.check(length, vocab_size, mask_id)
    device = generator.device
    x = torch.full((batch, length), mask_id, dtype=torch.long, device=device)
    x = x if condition is None else condition.apply(x)
    nfe, last_x, log_p = 0, None, None
    for step in plan:
        if not (cache and last_x is not None and torch.equal(x, last_x)):
            sigma = torch.full((batch,), step.sigma, dtype=torch.float64, device=device)
            log_p = denoise_fn(x, sigma)
            nfe, last_x = nfe + 1, x
        new = step_kernel.draw(log_p, x, step, generator)
        if new is x:
            continue
        x = new if condition is None else condition.apply(new)
    return SampleResult(x, nfe)


def all_sequences(vocab_size: int, length: int) -> torch.Tensor:
    """Every sequence [V^L, L] in lexicographic order (index = sum_i x^i V^(L-1-i))."""
    n = vocab_size**length
    if n > MAX_ENUMERATED_STATES:
        raise DlmError(f"exact enumeration needs V^L <= {MAX_ENUMERATED_STATES}, got {vocab_size}^{length} = {n}")
    idx = torch.arange(n)
    powers = vocab_size ** torch.arange(length - 1, -1, -1)
    return (idx.unsqueeze(-1) // powers) % vocab_size


def push_distribution(dist: torch.Tensor, states: torch.Tensor, probs: torch.Tensor, condition: Condition | None) -> torch.Tensor:
    """One sampler step on an exact distribution: ``dist`` [S] over ``states`` [S, L] times the kernel
    K[a, b] = prod_i probs[a, i, b^i] (``probs`` [S, L, V] normalised here, conditions held).

    Only states the sampler can be in (dist > 0) are pushed: the rows of unreachable states (for
    data with zero-probability sequences, scores there are 0/0) never enter.
    """
    live = dist > 0
    probs = probs[live].double()
    if condition is not None:
        probs = condition.fix_probs(probs)
    total = probs.sum(-1, keepdim=True)
    if not (torch.isfinite(total).all() and (total > 0).all()):
        raise DlmError("a reachable state has step probabilities that are all zero or not finite")
    probs = probs / total
    kernel = torch.ones(probs.shape[0], states.shape[0], dtype=torch.float64)
    for i in range(states.shape[1]):
        kernel = kernel * probs[:, i, states[:, i]]
    return dist[live] @ kernel


def start_distribution(states: torch.Tensor, prior: torch.Tensor, vocab_size: int, condition: Condition | None) -> torch.Tensor:
    """Exact start distribution over ``states`` (:func:`all_sequences`): the ``prior`` [S], then
    conditioned positions written (their mass moved to the written states)."""
    if condition is None:
        return prior
    target = condition.apply(states) @ (vocab_size ** torch.arange(states.shape[1] - 1, -1, -1))
    return torch.zeros_like(prior).index_add_(0, target, prior)


def sedd_output_distribution(
    score_fn: ScoreFn, graph: Graph, schedule: NoiseSchedule, length: int, steps: int, *,
    predictor: str = "analytic", eps: float = 1e-5, condition: Condition | None = None,
) -> torch.Tensor:
    """Exact distribution [V^L] of ``sample_sedd``'s output, by enumerating all sequences."""
    step = get_predictor(predictor)
    states = all_sequences(graph.vocab_size, length)
    dist = start_distribution(states, graph.prior_log_prob(states).exp(), graph.vocab_size, condition)
    for sigma_t, dsigma in sedd_plan(schedule, steps, eps, predictor):
        dist = push_distribution(dist, states, sedd_step(score_fn, graph, step, states, sigma_t, dsigma), condition)
    return dist


def masked_output_distribution(
    denoise_fn: DenoiseFn, mask_id: int, vocab_size: int, schedule: NoiseSchedule, length: int, steps: int, *,
    condition: Condition | None = None, temperature: float = 1.0, top_p: float = 1.0, kernel: str = "ancestral",
) -> torch.Tensor:
    """Exact distribution [V^L] of ``sample_masked``'s output, by enumerating all sequences."""
    step_kernel = get_masked_kernel(kernel, mask_id, temperature=temperature, top_p=top_p)
    states = all_sequences(vocab_size, length)
    prior = (states == mask_id).all(-1).double()
    dist = start_distribution(states, prior, vocab_size, condition)
    for step in step_kernel.plan(schedule, steps):
        sigma = torch.full((states.shape[0],), step.sigma, dtype=torch.float64)
        dist = push_distribution(dist, states, step_kernel.probs(denoise_fn(states, sigma), states, step), condition)
    return dist
