"""Samplers against exact answers: independent step kernels, enumerated discretised samplers, the
data distribution at many steps, exact conditionals, and cached == uncached."""

import math

import pytest
import torch
from toy import Toy, histogram, markov_chain, random_categorical, rate_matrix, tv, tv_tolerance

from dlmkit.diffusion.graphs import Absorbing, Uniform
from dlmkit.diffusion.masked import ancestral_probs
from dlmkit.diffusion.schedules import Geometric, LogLinear
from dlmkit.errors import DlmError
from dlmkit.sampling.categorical import adjust_log_probs
from dlmkit.sampling.conditioning import Condition, exact_conditional
from dlmkit.sampling.discrete import (
    euler_probs, masked_output_distribution, sample_masked, sample_sedd, sedd_output_distribution,
)

D = torch.float64
N = 20000
ABS = Toy(random_categorical(3, 3, seed=4), 3, 3, "absorbing", mask_id=1)
UNI = Toy(markov_chain(3, 3, seed=5), 3, 3, "uniform")
SETUPS = {
    "absorbing": (ABS, Absorbing(4, 1), LogLinear(1e-3)),
    "uniform": (UNI, Uniform(3), Geometric(1e-4, 20.0)),
}
EPS = 1e-3


def per_position_kernel(toy, probs):
    """Test-side K[a, b] = prod_i probs[a, i, b^i] over the toy's states."""
    k = torch.ones(toy.n_states, toy.n_states, dtype=D)
    for i in range(toy.length):
        k = k * probs[:, i, toy.states[:, i]]
    return k


def exact_posterior(toy, sigma_t, sigma_s):
    """p(x_s^i = y | x_t) for every state, from the joint of the forward process (sigma_s = 0: data)."""
    joint = toy.joint_transition(sigma_t - sigma_s) * toy.marginal(sigma_s).unsqueeze(0)
    onehot = torch.nn.functional.one_hot(toy.states, toy.vocab).double()
    return torch.einsum("ab,biv->aiv", joint, onehot) / joint.sum(1)[:, None, None]


def euler_kernel(toy, sigma_t, dsigma):
    """Test-side Euler kernel: P(x^i -> y) = dsigma Q[x^i, y] p_t(x^i := y)/p_t(x), stay = the rest (clamped)."""
    q = rate_matrix(toy.kind, toy.vocab, toy.mask_id)
    p_t = toy.marginal(sigma_t)
    expected = torch.zeros(toy.n_states, toy.length, toy.vocab, dtype=D)
    for a, x in enumerate(toy.states.tolist()):
        for i in range(toy.length):
            for y in range(toy.vocab):
                if y != x[i]:
                    expected[a, i, y] = dsigma * q[x[i], y] * p_t[toy.neighbours[a, i, y]] / p_t[a]
            expected[a, i, x[i]] = max(0.0, 1 - float(expected[a, i].sum()))
    return expected


def test_euler_kernel_matches_reverse_generator():
    for toy, graph, _ in SETUPS.values():
        sigma_t, dsigma = 1.1, 0.4
        log_score = toy.score_fn(toy.states, torch.full((toy.n_states,), sigma_t, dtype=D))
        assert torch.allclose(euler_probs(graph, toy.states, log_score, dsigma), euler_kernel(toy, sigma_t, dsigma), atol=1e-12)


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_enumerated_euler_sampler_is_sedds_euler_predictor(kind):
    """SEDD's EulerPredictor: from t_k the step removes (t_k - t_{k+1}) sigma(t_k) of noise (the schedule's
    rate at the step's start, not the increment of sigma_bar), then Tweedie to sigma = 0 at t = eps."""
    toy, graph, schedule = SETUPS[kind]
    steps = 3
    times = torch.linspace(1.0, EPS, steps + 1, dtype=D)
    dist = graph.prior_log_prob(toy.states).exp()
    for k in range(steps):
        sigma_t = float(schedule.total(times[k]))
        dsigma = float((times[k] - times[k + 1]) * schedule.rate(times[k]))
        kernel = euler_kernel(toy, sigma_t, dsigma)  # jumps may sum past 1: the stay is 0, the rest renormalised
        dist = dist @ per_position_kernel(toy, kernel / kernel.sum(-1, keepdim=True))
    final = exact_posterior(toy, float(schedule.total(times[-1])), 0.0)
    if kind == "absorbing":
        final[..., toy.mask_id] = 0.0
        final = final / final.sum(-1, keepdim=True)
    dist = dist @ per_position_kernel(toy, final)
    lib = sedd_output_distribution(toy.score_fn, graph, schedule, 3, steps, predictor="euler", eps=EPS)
    assert torch.allclose(lib, dist, atol=1e-10)


def test_euler_unmasks_with_the_true_probability_on_absorbing_loglinear():
    """Absorbing + log-linear: SEDD's Euler step is the exact per-position posterior, so each masked token
    unmasks with probability (alpha_s - alpha_t)/(1 - alpha_t) and takes its value from p(x0^i | x_t)."""
    toy, graph, schedule = SETUPS["absorbing"]
    t, s = 0.8, 0.55
    sigma_t, sigma_s = float(schedule.total(torch.tensor(t, dtype=D))), float(schedule.total(torch.tensor(s, dtype=D)))
    dsigma = (t - s) * float(schedule.rate(torch.tensor(t, dtype=D)))
    log_score = toy.score_fn(toy.states, torch.full((toy.n_states,), sigma_t, dtype=D))
    probs = euler_probs(graph, toy.states, log_score, dsigma)
    assert torch.allclose(probs, exact_posterior(toy, sigma_t, sigma_s), atol=1e-12)
    masked = toy.states == toy.mask_id
    alpha_t, alpha_s = math.exp(-sigma_t), math.exp(-sigma_s)
    unmask = 1.0 - probs[..., toy.mask_id][masked]
    assert torch.allclose(unmask, torch.full_like(unmask, (alpha_s - alpha_t) / (1 - alpha_t)), atol=1e-12)


def test_sedd_euler_is_closer_to_the_data_than_the_sigma_bar_increment_step(monkeypatch):
    """The step SEDD uses beats the first-order step of size sigma_bar(t) - sigma_bar(s) at 8 steps on both graphs."""
    import dlmkit.sampling.discrete as discrete

    for kind in SETUPS:
        toy, graph, schedule = SETUPS[kind]
        sedd = tv(sedd_output_distribution(toy.score_fn, graph, schedule, 3, 8, predictor="euler", eps=EPS), toy.data)
        plan = discrete.sedd_plan
        monkeypatch.setattr(discrete, "sedd_plan", lambda sch, n, e, pred: plan(sch, n, e, "analytic"))
        increment = tv(sedd_output_distribution(toy.score_fn, graph, schedule, 3, 8, predictor="euler", eps=EPS), toy.data)
        monkeypatch.setattr(discrete, "sedd_plan", plan)
        assert sedd < increment - 0.005, (kind, sedd, increment)


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_enumerated_analytic_sampler_matches_independent_product_of_posteriors(kind):
    """With the exact score each analytic step is the exact per-position posterior, and the final step
    is Tweedie to sigma = 0; the library's enumeration must equal that product of kernels."""
    toy, graph, schedule = SETUPS[kind]
    steps = 3
    sig = schedule.total(torch.linspace(1.0, EPS, steps + 1, dtype=D)).tolist()
    dist = graph.prior_log_prob(toy.states).exp()
    for k in range(steps):
        dist = dist @ per_position_kernel(toy, exact_posterior(toy, sig[k], sig[k + 1]))
    final = exact_posterior(toy, sig[-1], 0.0)
    if kind == "absorbing":
        final[..., toy.mask_id] = 0.0
        final = final / final.sum(-1, keepdim=True)
    dist = dist @ per_position_kernel(toy, final)
    lib = sedd_output_distribution(toy.score_fn, graph, schedule, 3, steps, predictor="analytic", eps=EPS)
    assert torch.allclose(lib, dist, atol=1e-10)


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
@pytest.mark.parametrize("predictor", ["euler", "analytic"])
def test_sedd_samples_match_the_enumerated_discretised_sampler(kind, predictor):
    toy, graph, schedule = SETUPS[kind]
    g = torch.Generator().manual_seed(10)
    for steps in [1, 5]:
        exact = sedd_output_distribution(toy.score_fn, graph, schedule, 3, steps, predictor=predictor, eps=EPS)
        out = sample_sedd(toy.score_fn, graph, schedule, N, 3, steps, generator=g, predictor=predictor, eps=EPS)
        assert out.nfe == steps + 1
        assert tv(histogram(toy, out.tokens), exact) < tv_tolerance(int((exact > 0).sum()), N)


@pytest.mark.parametrize("predictor", ["euler", "analytic"])
def test_zero_probability_states_are_not_nan(predictor):
    """Data with zero-probability sequences: the score is 0/0 at unreachable states, which must not
    poison the enumerated law; it stays a distribution and matches the sampler."""
    toy, graph, schedule = ABS.conditional([0], [2]), Absorbing(4, 1), LogLinear(1e-3)
    exact = sedd_output_distribution(toy.score_fn, graph, schedule, 3, 4, predictor=predictor, eps=EPS)
    assert torch.isfinite(exact).all() and abs(float(exact.sum()) - 1.0) < 1e-12
    assert float(exact[toy.data == 0].sum()) < 1e-12
    out = sample_sedd(toy.score_fn, graph, schedule, N, 3, 4, generator=torch.Generator().manual_seed(3),
                      predictor=predictor, eps=EPS)
    assert tv(histogram(toy, out.tokens), exact) < tv_tolerance(int((exact > 0).sum()), N)


def test_masked_samples_match_the_enumerated_discretised_sampler():
    toy, schedule = ABS, LogLinear(1e-3)
    g = torch.Generator().manual_seed(11)
    for steps, temperature, top_p in [(1, 1.0, 1.0), (4, 1.0, 1.0), (4, 0.7, 0.8)]:
        exact = masked_output_distribution(toy.denoise_fn, 1, 4, schedule, 3, steps,
                                           temperature=temperature, top_p=top_p)
        out = sample_masked(toy.denoise_fn, 1, 4, schedule, N, 3, steps, generator=g,
                            temperature=temperature, top_p=top_p)
        assert out.nfe == steps
        assert tv(histogram(toy, out.tokens), exact) < tv_tolerance(int((exact > 0).sum()), N)


def test_ancestral_kernel_matches_mdlm_posterior():
    """q(x_s | x_t, x0) marginalised over x0 ~ p(x0 | x_t): the exact reverse per position."""
    toy = ABS
    sigma_t, sigma_s = 1.5, 0.4
    log_p = toy.denoise_fn(toy.states, None)
    lib = ancestral_probs(log_p, toy.states, 1, math.exp(-sigma_t), math.exp(-sigma_s))
    assert torch.allclose(lib, exact_posterior(toy, sigma_t, sigma_s), atol=1e-12)


@pytest.mark.parametrize("name", ["euler", "analytic", "uniform-analytic", "masked"])
def test_many_steps_reproduce_the_data(name):
    """Enumerated output at many steps is (nearly) the data; samples at moderate steps agree too."""
    kind = "uniform" if name.startswith("uniform") else "absorbing"
    toy, graph, schedule = SETUPS[kind]
    predictor = "euler" if name == "euler" else "analytic"
    g = torch.Generator().manual_seed(12)
    if name == "masked":
        dist = lambda steps: masked_output_distribution(toy.denoise_fn, 1, 4, schedule, 3, steps)
        draw = lambda steps: sample_masked(toy.denoise_fn, 1, 4, schedule, N, 3, steps, generator=g).tokens
    else:
        dist = lambda steps: sedd_output_distribution(toy.score_fn, graph, schedule, 3, steps, predictor=predictor, eps=EPS)
        draw = lambda steps: sample_sedd(toy.score_fn, graph, schedule, N, 3, steps, generator=g,
                                         predictor=predictor, eps=EPS).tokens
    assert tv(dist(256), toy.data) < 0.004
    bias = tv(dist(32), toy.data)
    assert tv(histogram(toy, draw(32)), toy.data) < tv_tolerance(27, N) + bias


COND_TOY = Toy(markov_chain(3, 4, seed=6), 3, 4, "absorbing", mask_id=2)
CONDITIONS = {
    "prefix": Condition.from_spans(4, prefix=[0, 3]),
    "suffix": Condition.from_spans(4, suffix=[3, 1]),
    "prefix+suffix": Condition.from_spans(4, prefix=[1], suffix=[0]),
    "infill": Condition.from_spans(4, spans=[(1, [3, 3])]),
}


@pytest.mark.parametrize("cond", CONDITIONS)
@pytest.mark.parametrize("sampler", ["analytic", "masked"])
def test_absorbing_conditioning_reproduces_the_exact_conditional(cond, sampler):
    toy, condition = COND_TOY, CONDITIONS[cond]
    graph, schedule = Absorbing(4, 2), LogLinear(1e-3)
    exact = exact_conditional(toy.data, toy.states, condition)
    g = torch.Generator().manual_seed(13)
    if sampler == "masked":
        dist = lambda steps: masked_output_distribution(toy.denoise_fn, 2, 4, schedule, 4, steps, condition=condition)
        out = sample_masked(toy.denoise_fn, 2, 4, schedule, N, 4, 16, generator=g, condition=condition).tokens
    else:
        dist = lambda steps: sedd_output_distribution(toy.score_fn, graph, schedule, 4, steps, eps=EPS,
                                                      condition=condition)
        out = sample_sedd(toy.score_fn, graph, schedule, N, 4, 16, generator=g, eps=EPS, condition=condition).tokens
    coarse, fine = tv(dist(16), exact), tv(dist(64), exact)
    assert fine < 0.01 and fine <= coarse / 3.5 + 1e-12  # discretisation error only, O(1/steps)
    held = torch.tensor(condition.token_ids)
    assert (out[:, list(condition.positions)] == held).all()
    assert tv(histogram(toy, out), exact) < tv_tolerance(9, N) + coarse


def test_cached_masked_sampler_returns_the_uncached_samples():
    toy, schedule = ABS, LogLinear(1e-3)
    for kw in [{}, {"temperature": 0.8, "top_p": 0.9}, {"condition": Condition.from_spans(3, suffix=[2])}]:
        plain = sample_masked(toy.denoise_fn, 1, 4, schedule, 8, 3, 200, generator=torch.Generator().manual_seed(7), **kw)
        cached = sample_masked(toy.denoise_fn, 1, 4, schedule, 8, 3, 200, generator=torch.Generator().manual_seed(7),
                               cache=True, **kw)
        assert torch.equal(plain.tokens, cached.tokens)
        assert plain.nfe == 200 and cached.nfe <= 1 + 8 * 3  # a call only after a step that unmasked something
        assert (plain.tokens != 1).all()


def test_adjust_log_probs():
    log_p = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=D))
    assert torch.allclose(adjust_log_probs(log_p, top_p=0.8).exp(), torch.tensor([[0.625, 0.375, 0, 0]], dtype=D))
    assert torch.allclose(adjust_log_probs(log_p, top_p=0.81).exp(), torch.tensor([[0.5, 0.3, 0.15, 0]], dtype=D) / 0.95)
    hot = adjust_log_probs(log_p, temperature=0.5).exp()
    assert torch.allclose(hot, log_p.exp() ** 2 / (log_p.exp() ** 2).sum())
    with pytest.raises(DlmError):
        adjust_log_probs(log_p, temperature=0.0)


def test_bad_arguments_raise_dlm_errors():
    g = torch.Generator()
    with pytest.raises(DlmError, match="steps"):
        sample_sedd(ABS.score_fn, Absorbing(4, 1), LogLinear(), 2, 3, 0, generator=g)
    with pytest.raises(DlmError, match="predictor"):
        sample_sedd(ABS.score_fn, Absorbing(4, 1), LogLinear(), 2, 3, 2, generator=g, predictor="heun")
    with pytest.raises(DlmError, match="infinite"):
        sample_sedd(ABS.score_fn, Absorbing(4, 1), LogLinear(0.0), 2, 3, 2, generator=g)
    with pytest.raises(DlmError, match="sample length"):
        sample_masked(ABS.denoise_fn, 1, 4, LogLinear(), 2, 3, 2, generator=g, condition=Condition((3,), (0,)))
    with pytest.raises(DlmError, match="mask"):
        sample_masked(ABS.denoise_fn, 1, 4, LogLinear(), 2, 3, 2, generator=g, condition=Condition((0,), (1,)))
    with pytest.raises(DlmError, match="vocabulary"):
        sample_sedd(ABS.score_fn, Absorbing(4, 1), LogLinear(), 2, 3, 2, generator=g, condition=Condition((0,), (7,)))


def test_start_and_push_distribution_are_exact_on_two_positions():
    """The public enumeration helpers (shared with the block sampler): a condition moves the prior's
    mass onto the written states; one push is dist @ K with K[a, b] = prod_i probs[a, i, b^i]."""
    from dlmkit.sampling.discrete import all_sequences, push_distribution, start_distribution

    states = all_sequences(2, 2)  # 00, 01, 10, 11
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=D)
    assert torch.equal(start_distribution(states, prior, 2, None), prior)
    held = start_distribution(states, prior, 2, Condition((0,), (1,)))  # position 0 written as 1
    assert torch.allclose(held, torch.tensor([0.0, 0.0, 0.4, 0.6], dtype=D))
    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=D).expand(4, 2, 2) * 2  # unnormalised on purpose
    want = prior @ torch.outer(torch.tensor([0.5, 0.5], dtype=D), torch.tensor([0.25, 0.75], dtype=D)).reshape(1, 4).expand(4, 4)
    assert torch.allclose(push_distribution(prior, states, probs, None), want)
    pushed = push_distribution(held, states, probs, Condition((0,), (1,)))  # position 0 stays 1
    assert torch.allclose(pushed, torch.tensor([0.0, 0.0, 0.25, 0.75], dtype=D))
