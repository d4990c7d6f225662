"""SDTT's maths against exact answers on enumerable toys: the one-step target is the exact law of two
teacher steps; a student that equals it takes the teacher's 2k steps in k, position by position; the
divergences are minimised by the target; the rounds schedule."""

import pytest
import torch
from toy import Toy, histogram, markov_chain, random_categorical, tv, tv_tolerance

from dlmkit.diffusion.schedules import LogLinear
from dlmkit.diffusion.sdtt import (
    DIVERGENCES, divergence, reference_target, rounds_schedule, rows_step, step_pairs, target_given_middle, two_step_target,
)
from dlmkit.errors import DlmError
from dlmkit.sampling.discrete import masked_output_distribution, sample_masked
from dlmkit.sampling.masked_kernels import get_masked_kernel, masked_plan

D = torch.float64
MASK = 1
TOY = Toy(markov_chain(3, 3, seed=7), 3, 3, "absorbing", mask_id=MASK)  # strong correlations between positions
RAND = Toy(random_categorical(3, 3, seed=8), 3, 3, "absorbing", mask_id=MASK)
SCHEDULE = LogLinear(1e-3)
KERNEL = get_masked_kernel("ancestral", MASK)


def mid_law(toy, x_t, step):
    """P(x_mid = state) [S] of one kernel step from the single state x_t, by enumeration."""
    p1 = KERNEL.probs(toy.denoise_fn(x_t[None], None), x_t[None], step)[0]  # [L, V]
    return torch.stack([p1[torch.arange(toy.length), s].prod() for s in toy.states])


def exact_value_law(toy, x_t, pair):
    """The per-position law of x_s after two teacher steps from x_t, enumerated over every
    intermediate state, restricted to values and renormalised: [L, V]."""
    w = mid_law(toy, x_t, pair.first)
    p2 = KERNEL.probs(toy.denoise_fn(toy.states, None), toy.states, pair.second)  # [S, L, V]
    law = (w[:, None, None] * p2).sum(0)
    values = law.clone()
    values[:, MASK] = 0.0
    return values / values.sum(-1, keepdim=True)


@pytest.mark.parametrize("toy", [TOY, RAND], ids=["markov", "random"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_one_step_target_is_the_exact_two_step_law(toy, k):
    """Averaged over every intermediate state with its probability, the estimate is the two-step law
    at every position masked at x_t, for every step of the plan and every x_t."""
    for pair in step_pairs(SCHEDULE, k):
        for x_t in toy.states[(toy.states == MASK).any(-1)]:
            w = mid_law(toy, x_t, pair.first)
            live = w > 0
            mids = toy.states[live]
            n = mids.shape[0]
            xt = x_t.expand(n, -1)
            est = target_given_middle(KERNEL, xt, mids, toy.denoise_fn(xt, None), toy.denoise_fn(mids, None), pair)
            mean = (w[live][:, None, None] * est).sum(0)
            masked = x_t == MASK
            assert torch.allclose(mean[masked], exact_value_law(toy, x_t, pair)[masked], atol=1e-12)


def test_reference_target_is_the_later_prediction():
    """The released code's target, averaged over the intermediate states: the first prediction with
    the first step's unmasking probability, the second (one step later) with the rest; it is the
    two-step law only when the second step unmasks everything (the last pair). The teacher is the
    exact denoiser at temperature 2: for an exact one the later prediction averages back to the
    earlier one (a martingale) and the two targets agree."""
    pairs = step_pairs(SCHEDULE, 3)
    x_t = torch.tensor([MASK, MASK, MASK])
    teacher = lambda x, sigma: torch.log_softmax(0.5 * TOY.denoise_fn(x, sigma), -1)
    for j, pair in enumerate(pairs):
        p1 = KERNEL.probs(teacher(x_t[None], None), x_t[None], pair.first)[0]
        w = torch.stack([p1[torch.arange(3), st].prod() for st in TOY.states])
        live = w > 0
        mids, n = TOY.states[live], int(live.sum())
        xt = x_t.expand(n, -1)
        log_t, log_mid = teacher(xt, None), teacher(mids, None)
        mean = (w[live][:, None, None] * reference_target(xt, mids, log_t, log_mid)).sum(0)
        a1 = (pair.first.alpha_s - pair.first.alpha_t) / (1 - pair.first.alpha_t)
        still = (mids == MASK).double()  # [n, L]: masked after the first step
        later = (w[live][:, None, None] * still[..., None] * log_mid.exp()).sum(0) / (1 - a1)
        expect = a1 * log_t[0].exp() + (1 - a1) * later
        assert torch.allclose(mean, expect, atol=1e-12)
        p2 = KERNEL.probs(teacher(TOY.states, None), TOY.states, pair.second)
        law = (w[:, None, None] * p2).sum(0)
        law[:, MASK] = 0.0
        law = law / law.sum(-1, keepdim=True)
        assert torch.allclose(mean, law, atol=1e-12) == (j == len(pairs) - 1)


def test_sampled_targets_average_to_the_law():
    """``two_step_target`` (teacher calls + the kernel's draw) on a batch of per-row steps."""
    pairs = step_pairs(SCHEDULE, 2)
    x_t = torch.full((40000, 3), MASK)
    x_t[20000:, 0] = 2  # half the rows with a clean first position, at the second step
    idx = torch.cat([torch.zeros(20000, dtype=torch.long), torch.ones(20000, dtype=torch.long)])
    from dlmkit.diffusion.sdtt import StepPair

    pair = StepPair(*(rows_step([getattr(p, f) for p in pairs], idx) for f in ("student", "first", "second")))
    est = two_step_target(TOY.denoise_fn, KERNEL, x_t, pair, torch.Generator().manual_seed(0))
    for rows, j in ((slice(0, 20000), 0), (slice(20000, None), 1)):
        law = exact_value_law(TOY, x_t[rows][0], pairs[j])
        masked = x_t[rows][0] == MASK
        # per-entry standard error of a mean of 20000 draws bounded by 1/sqrt(20000) / a; 5 sigma
        assert (est[rows].mean(0)[masked] - law[masked]).abs().max() < 5 * 2 / 20000**0.5


def tabular_student(toy, k):
    """A time-conditioned student that predicts the exact target at every step and state (the
    minimiser of every divergence): a table [k, S, L, V] looked up by the step's noise level."""
    pairs = step_pairs(SCHEDULE, k)
    table = torch.full((k, toy.n_states, toy.length, toy.vocab), -torch.inf, dtype=D)
    for j, pair in enumerate(pairs):
        for s, x_t in enumerate(toy.states):
            if (x_t == MASK).any():
                table[j, s] = exact_value_law(toy, x_t, pair).log()
            table[j, s][x_t != MASK] = -torch.inf
            table[j, s, torch.arange(toy.length)[x_t != MASK], x_t[x_t != MASK]] = 0.0
    sigmas = torch.tensor([p.student.sigma for p in pairs], dtype=D)

    def denoise(x, sigma):
        j = (sigma[:, None] - sigmas[None]).abs().argmin(-1)
        return table[j, toy.index(x)]

    return denoise


@pytest.mark.parametrize("k", [1, 2, 4])
def test_student_takes_the_teachers_2k_steps_in_k(k):
    """The student's plan is the teacher's 2k-step plan two steps at a time, and its samples follow
    its enumerated law. At k = 1 its output has the teacher's two-step per-position laws exactly;
    the joint law of a step is a product over positions, so it cannot have the teacher's 2k-step
    joint law: on this toy (strongly correlated positions, a perfect teacher) it stays as far from
    it as the teacher at k steps (within 1%): the per-position laws of a perfect teacher's two steps
    are nearly its one-step ones, and what more steps add is the joint."""
    toy = TOY
    student = tabular_student(toy, k)
    plan = masked_plan(SCHEDULE, k)
    for a, b in zip((p.student for p in step_pairs(SCHEDULE, k)), plan, strict=True):
        assert abs(a.alpha_t - b.alpha_t) < 1e-12 and abs(a.alpha_s - b.alpha_s) < 1e-12 and abs(a.sigma - b.sigma) < 1e-9
    student_law = masked_output_distribution(student, MASK, toy.vocab, SCHEDULE, toy.length, k)
    teacher_2k = masked_output_distribution(toy.denoise_fn, MASK, toy.vocab, SCHEDULE, toy.length, 2 * k)
    teacher_k = masked_output_distribution(toy.denoise_fn, MASK, toy.vocab, SCHEDULE, toy.length, k)
    gap, baseline = tv(student_law, teacher_2k), tv(teacher_k, teacher_2k)
    assert abs(gap - baseline) < 0.01 * baseline
    if k == 1:
        onehot = torch.nn.functional.one_hot(toy.states, toy.vocab).double()
        marg = lambda law: torch.einsum("s,slv->lv", law, onehot)
        assert torch.allclose(marg(student_law), marg(teacher_2k), atol=1e-12)
        assert gap > 0.2  # the joint is not reproduced: a product law cannot
    n = 20000
    out = sample_masked(student, MASK, toy.vocab, SCHEDULE, n, toy.length, k, generator=torch.Generator().manual_seed(k))
    emp = histogram(toy, out.tokens)
    tol = tv_tolerance(int((student_law > 0).sum()), n)
    assert tv(emp, student_law) < tol
    assert tv(emp, teacher_2k) < gap + tol


def test_a_student_fit_to_sampled_targets_reaches_the_law():
    """Gradient steps on the kl divergence with one sampled intermediate state per draw: a free
    logit table at one x_t converges to the exact two-step law (the minimiser of the expected loss)."""
    pair = step_pairs(SCHEDULE, 2)[0]
    x_t = torch.full((1, 3), MASK)
    law = exact_value_law(TOY, x_t[0], pair)
    logits = torch.zeros(3, TOY.vocab, dtype=D, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    g = torch.Generator().manual_seed(1)
    for _ in range(400):
        tgt = two_step_target(TOY.denoise_fn, KERNEL, x_t.expand(256, -1), pair, g)  # [256, L, V]
        log_q = torch.log_softmax(logits.masked_fill(torch.arange(TOY.vocab) == MASK, -torch.inf), -1)
        loss = divergence("kl", log_q.expand(256, -1, -1).reshape(-1, TOY.vocab), tgt.reshape(-1, TOY.vocab)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    q = torch.softmax(logits.detach().masked_fill(torch.arange(TOY.vocab) == MASK, -torch.inf), -1)
    assert (q - law).abs().max() < 0.02


@pytest.mark.parametrize("name", DIVERGENCES)
def test_divergences_vanish_only_at_the_target(name):
    g = torch.Generator().manual_seed(2)
    target = torch.softmax(torch.randn(5, 6, generator=g, dtype=D), -1)
    logits = target.log().clone().requires_grad_(True)
    at = divergence(name, torch.log_softmax(logits, -1), target)
    assert at.abs().max() < 1e-12
    at.sum().backward()
    if name != "tvd":  # not differentiable at its minimum (a subgradient there is not 0)
        assert logits.grad.abs().max() < 1e-9
    other = divergence(name, torch.log_softmax(torch.randn(5, 6, generator=g, dtype=D), -1), target)
    assert (other > 1e-4).all()


def test_kl_of_an_unnormalised_target_keeps_its_mean_as_minimiser():
    """Two draws with masses 0.5 and 1.5 whose mean is a distribution: the summed kl is minimised there."""
    a, b = torch.tensor([[0.3, 0.2]], dtype=D), torch.tensor([[0.5, 1.0]], dtype=D)
    mean = (a + b) / 2
    logits = torch.zeros(1, 2, dtype=D, requires_grad=True)
    opt = torch.optim.LBFGS([logits], max_iter=200, tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        opt.zero_grad()
        lq = torch.log_softmax(logits, -1)
        loss = divergence("kl", lq, a).sum() + divergence("kl", lq, b).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.allclose(torch.softmax(logits.detach(), -1), mean, atol=1e-8)


def test_rkl_over_draws_is_minimised_by_the_geometric_mean():
    """Summed over draws of the target, the reverse KL is minimised by the normalised geometric mean
    of the draws, not by their mean (the kl minimiser): it keeps what every draw finds likely, so a
    student fit with it is sharper than the law it distils (the paper's mode seeking)."""
    g = torch.Generator().manual_seed(3)
    draws = torch.softmax(2 * torch.randn(4, 5, generator=g, dtype=D), -1)  # four targets of one position
    logits = torch.zeros(1, 5, dtype=D, requires_grad=True)
    opt = torch.optim.LBFGS([logits], max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        opt.zero_grad()
        loss = divergence("rkl", torch.log_softmax(logits, -1).expand(4, -1), draws).sum()
        loss.backward()
        return loss

    opt.step(closure)
    q = torch.softmax(logits.detach(), -1)[0]
    geometric = torch.softmax(draws.log().mean(0), -1)
    assert torch.allclose(q, geometric, atol=1e-7)
    entropy = lambda p: -(p * p.log()).sum()
    assert (q - draws.mean(0)).abs().max() > 0.05 and entropy(q) < entropy(draws.mean(0))


def test_rounds_halve_the_steps():
    assert rounds_schedule(1024, 3) == [(1024, 512), (512, 256), (256, 128)]
    assert rounds_schedule(16, 4) == [(16, 8), (8, 4), (4, 2), (2, 1)]
    with pytest.raises(DlmError, match="multiple of 8"):
        rounds_schedule(12, 3)
    with pytest.raises(DlmError):
        rounds_schedule(16, 0)
    with pytest.raises(DlmError, match="unknown SDTT divergence"):
        divergence("js", torch.zeros(1, 2), torch.ones(1, 2))
