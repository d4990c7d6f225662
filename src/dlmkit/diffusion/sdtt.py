"""Self-distillation through time (SDTT; Deschenaux & Gulcehre, "Beyond Autoregression: Fast LLMs
via Self-Distillation Through Time", 2024): the maths of one student step, torch only.

A masked-diffusion student learns to take in one ancestral step what its teacher takes in two.
For a student step from t to s (the k-step grid) the teacher takes the two steps t -> m -> s of the
2k-step grid. The student's step moves every masked position independently: it unmasks it with
probability a = (alpha_s - alpha_t)/(1 - alpha_t) to a value drawn from p_student(. | x_t). The
teacher's two steps unmask position i with the same probability, and the value it lands on has the
law (the *target* of position i, a distribution over the vocabulary)

    v_i = [ P1_i(y) + P1_i(mask) E[ P2_i(y) | x_m^i = mask ] ] / a,   y != mask,

where P1 is the first teacher step's per-position law (the kernel's ``probs`` at x_t) and P2 the
second's at the intermediate state x_m (the kernel's ``probs`` at x_m). The expectation runs over
the other positions of x_m, which the first step moves independently of position i. With one draw
of x_m from the first step, ``P1_i(y) + 1[x_m^i = mask] P2_i(y)`` has exactly that expectation:
:func:`two_step_target` returns it divided by a, an unbiased estimate of v_i (its mass is 1 on
average, not per draw). A student whose x0 prediction equals v_i at every masked position has, step
for step, the per-position law of two teacher steps; the joint law of several positions moved in
one step is a product, so the student can match the teacher's 2k-step law only position by
position (the limit the paper's students share).

The released code (jdeschena/sdtt) builds its target differently: the teacher's x0 prediction at
the step where a token was unmasked, or at the last step for one still masked. Its mean weighs
the second prediction by P1(mask) rather than P1(mask) P2(unmask) / a (the same only when the
second step unmasks everything), so it leans on the teacher's prediction one step later, with
more context. :func:`reference_target` computes it from the same two teacher calls
(``target="reference"`` in the recipe); the default is the law itself.

Divergences between the student's x0 prediction and the target at the masked positions:

* ``kl`` (default): KL(target || student), a cross-entropy in the target: its minimiser over the
  draws of x_m is the exact law v (unbiased targets need no normalising);
* ``rkl``: KL(student || target), the divergence the paper's README reports best (mode seeking;
  the target is normalised per draw, so its minimiser is not v exactly);
* ``mse``: mean squared difference of the log-probabilities (as the released code);
* ``tvd``: total variation, half the L1 distance of the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from dlmkit.errors import DlmError
from dlmkit.diffusion.schedules import NoiseSchedule
from dlmkit.sampling.masked_kernels import MaskedKernel, MaskedStep, masked_plan

DenoiseFn = Callable[[Tensor, Tensor], Tensor]
DIVERGENCES = ("kl", "rkl", "mse", "tvd")
TARGETS = ("law", "reference")
LOG_FLOOR = -60.0  # log-probabilities below this (exact zeros) are clipped for mse


@dataclass(frozen=True)
class StepPair:
    """One student step and the two teacher steps it replaces (``student`` = ``first`` then ``second``)."""

    student: MaskedStep
    first: MaskedStep
    second: MaskedStep


def rounds_schedule(start_steps: int, rounds: int) -> list[tuple[int, int]]:
    """(teacher steps, student steps) of each round: round r distils ``start_steps / 2^r`` teacher
    steps into half as many; the student of round r is the teacher of round r + 1."""
    if rounds < 1 or start_steps < 2:
        raise DlmError(f"need rounds >= 1 and start steps >= 2, got {rounds} rounds from {start_steps} steps")
    if start_steps % (2**rounds):
        raise DlmError(f"{rounds} rounds halve the steps {rounds} times: --start-steps {start_steps} is not a multiple of {2**rounds}")
    return [(start_steps >> r, start_steps >> (r + 1)) for r in range(rounds)]


def step_pairs(schedule: NoiseSchedule, student_steps: int) -> list[StepPair]:
    """The student's ``student_steps``-step plan, each step paired with the teacher's two steps of the
    ``2 * student_steps`` plan that cover it (the student step runs from the first's t to the second's s)."""
    teacher = masked_plan(schedule, 2 * student_steps)
    pairs = []
    for j in range(student_steps):
        a, b = teacher[2 * j], teacher[2 * j + 1]
        pairs.append(StepPair(MaskedStep(a.sigma, a.alpha_t, b.alpha_s), a, b))
    return pairs


def rows_step(steps: list[MaskedStep], index: Tensor) -> MaskedStep:
    """A step whose fields differ per row: ``steps[index[b]]`` for row b (sigma [B]; alphas [B, 1],
    which the ancestral kernel's ``draw`` and ``probs`` broadcast over positions)."""
    dev = index.device
    sigma = torch.tensor([s.sigma for s in steps], dtype=torch.float64, device=dev)[index]
    alpha_t = torch.tensor([s.alpha_t for s in steps], dtype=torch.float64, device=dev)[index, None]
    alpha_s = torch.tensor([s.alpha_s for s in steps], dtype=torch.float64, device=dev)[index, None]
    return MaskedStep(sigma, alpha_t, alpha_s)  # type: ignore[arg-type]


def _sigma(step: MaskedStep, x: Tensor) -> Tensor:
    s = step.sigma
    return s if torch.is_tensor(s) else torch.full((x.shape[0],), s, dtype=torch.float64, device=x.device)


def target_given_middle(
    kernel: MaskedKernel, x_t: Tensor, x_mid: Tensor, log_p_t: Tensor, log_p_mid: Tensor, pair: StepPair,
) -> Tensor:
    """The target estimate [B, L, V] (float64; zero in the mask column) from the teacher's
    predictions ``log_p_t`` at x_t and ``log_p_mid`` at one intermediate state ``x_mid`` (see the module
    docstring). Rows of positions clean at x_t are meaningless (the student step does not move them)."""
    mask = kernel.mask_id
    p1 = kernel.probs(log_p_t.double(), x_t, pair.first)
    p2 = kernel.probs(log_p_mid.double(), x_mid, pair.second)
    still = (x_mid == mask).unsqueeze(-1).to(p1.dtype)
    law = p1 + still * p2
    law[..., mask] = 0.0
    move = 1.0 - kernel.probs(log_p_t.double(), x_t, pair.student)[..., mask : mask + 1]  # P(unmask in the student step)
    return law / move.clamp_min(1e-300)


def reference_target(x_t: Tensor, x_mid: Tensor, log_p_t: Tensor, log_p_mid: Tensor) -> Tensor:
    """The released code's target [B, L, V]: the teacher's x0 prediction at x_t where the first step
    unmasked the position, else its prediction at ``x_mid``."""
    moved = (x_mid != x_t).unsqueeze(-1)
    return torch.where(moved, log_p_t.double().exp(), log_p_mid.double().exp())


@torch.no_grad()
def two_step_target(
    teacher: DenoiseFn, kernel: MaskedKernel, x_t: Tensor, pair: StepPair, generator: torch.Generator, target: str = "law",
) -> Tensor:
    """The target [B, L, V] at every position masked at ``x_t`` from two teacher calls and one draw of
    the intermediate state with the kernel: ``law``, an unbiased estimate of the value law of two
    teacher steps, or ``reference``, the released code's (:func:`reference_target`)."""
    if target not in TARGETS:
        raise DlmError(f"unknown SDTT target '{target}' (choose: {', '.join(TARGETS)})")
    log_p_t = teacher(x_t, _sigma(pair.first, x_t))
    x_mid = kernel.draw(log_p_t, x_t, pair.first, generator)
    log_p_mid = teacher(x_mid, _sigma(pair.second, x_mid))
    if target == "reference":
        return reference_target(x_t, x_mid, log_p_t, log_p_mid)
    return target_given_middle(kernel, x_t, x_mid, log_p_t, log_p_mid, pair)


def divergence(name: str, log_q: Tensor, target: Tensor) -> Tensor:
    """Per-row divergence [N] between the student's log-probabilities ``log_q`` [N, V] and a target
    [N, V] (``kl`` uses it as it is; the others normalise it per row). See the module docstring."""
    if name not in DIVERGENCES:
        raise DlmError(f"unknown SDTT divergence '{name}' (choose: {', '.join(DIVERGENCES)})")
    target = target.to(log_q.dtype)
    pos = target > 0
    if name == "kl":
        return torch.where(pos, target * (target.clamp_min(1e-300).log() - log_q), torch.zeros_like(target)).sum(-1)
    p = target / target.sum(-1, keepdim=True).clamp_min(1e-300)
    log_p = torch.where(p > 0, p.clamp_min(1e-300).log(), torch.full_like(p, -torch.inf))
    q = log_q.exp()
    if name == "rkl":
        return torch.where(q > 0, q * (log_q - log_p.clamp_min(LOG_FLOOR)), torch.zeros_like(q)).sum(-1)
    if name == "tvd":
        return 0.5 * (q - p).abs().sum(-1)
    return (log_q.clamp_min(LOG_FLOOR) - log_p.clamp_min(LOG_FLOOR)).pow(2).mean(-1)
