"""The NELBO against exact NLLs: tight with the exact model, an upper bound with sigma_min > 0."""

import math

import numpy as np
import pytest
import torch
from toy import Toy, exact_point, markov_chain, model_nll, random_categorical

from dlmkit.diffusion.graphs import Absorbing, Uniform
from dlmkit.diffusion.likelihood import (
    aggregate_nll, masked_count_nelbo, masked_nelbo, masked_terms, nelbo, score_nelbo, score_terms,
)
from dlmkit.diffusion.schedules import Geometric, LogLinear
from dlmkit.errors import DlmError

D = torch.float64
ABS = Toy(random_categorical(3, 3, seed=0), 3, 3, "absorbing", mask_id=1)
UNI = Toy(markov_chain(3, 3, seed=0), 3, 3, "uniform")


def score_terms_for(toy, graph):
    return lambda x0, xt, s: score_terms(toy.score_fn(xt, s), x0, xt, s, graph)


def masked_terms_for(toy):
    return lambda x0, xt, s: masked_terms(toy.denoise_fn(xt, s), x0, xt, s, toy.mask_id)


CASES = {
    "absorbing-loglinear0": (ABS, score_terms_for(ABS, Absorbing(4, 1)), LogLinear(0.0), 8),
    "absorbing-loglinear-eps": (ABS, score_terms_for(ABS, Absorbing(4, 1)), LogLinear(1e-3), 8),
    "masked-loglinear-eps": (ABS, masked_terms_for(ABS), LogLinear(1e-3), 8),
    "uniform-geometric-tiny": (UNI, score_terms_for(UNI, Uniform(3)), Geometric(1e-8, 40.0), 48),
}


@pytest.mark.parametrize("case", CASES)
def test_bound_is_tight_with_exact_model(case):
    """sigma0 = 0 (or ~0) and the tail to sigma = inf: the bound equals -log p_data(x0) per sequence."""
    toy, terms, schedule, n = CASES[case]
    x0 = toy.support()
    bound = nelbo(exact_point(toy, terms), schedule, x0, generator=torch.Generator(), n=n, method="quadrature")
    assert torch.allclose(bound.nll, toy.nll(x0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["absorbing", "uniform", "masked"])
def test_bound_with_positive_sigma_min_bounds_the_model(kind):
    """With sigma_min > 0 the reconstruction term keeps an upper bound on -log p_model(x0) for every
    sequence (the model ends with the factorised denoiser), and on the data entropy on average."""
    toy = UNI if kind == "uniform" else ABS
    terms = {"absorbing": score_terms_for(ABS, Absorbing(4, 1)), "uniform": score_terms_for(UNI, Uniform(3)),
             "masked": masked_terms_for(ABS)}[kind]
    x0, data = toy.support(), toy.data[toy.data > 0]
    for sigma_min in [0.05, 0.3]:
        schedule = Geometric(sigma_min, 20.0)
        bound = nelbo(exact_point(toy, terms), schedule, x0, generator=torch.Generator(), n=32, method="quadrature")
        assert (bound.nll >= model_nll(toy, x0, sigma_min, terms) - 1e-7).all()
        gap = float((data * (bound.nll - toy.nll(x0))).sum())
        assert gap > 1e-4  # a real, positive reconstruction gap on average
    tiny = nelbo(exact_point(toy, terms), Geometric(1e-4, 20.0), x0, generator=torch.Generator(), n=48,
                 method="quadrature")
    assert (tiny.nll - toy.nll(x0)).abs().max() < 1e-5  # the default sigma_min costs ~1e-7 nats


def simpson_in_log_sigma(point, x0, sigma0, n=600):
    """Test-side reference for int_{sigma0}^inf f d sigma: composite Simpson in v = log sigma on
    [log max(sigma0, 1e-14), log 60] (the integrand is smooth in v; below 1e-14 and above 60 it is negligible)."""
    v = torch.linspace(math.log(max(sigma0, 1e-14)), math.log(60.0), n + 1, dtype=D)
    coef = torch.ones(n + 1, dtype=D)
    coef[1:-1:2], coef[2:-1:2] = 4.0, 2.0
    total = torch.zeros(x0.shape[0], dtype=D)
    for vk, ck in zip(v.tolist(), coef.tolist()):
        sigma = math.exp(vk)
        total += ck * sigma * point(x0, torch.full((x0.shape[0],), sigma, dtype=D), None)[0]
    return total * float(v[1] - v[0]) / 3


@pytest.mark.parametrize("graph", ["absorbing", "uniform", "masked"])
@pytest.mark.parametrize("schedule", ["loglinear", "geometric"])
def test_default_quadrature_is_accurate_and_above_the_nll(graph, schedule):
    """At the default 8 nodes the quadrature is within 1e-3 nats per sequence of the integral, for every
    graph x schedule, and never below -log p_model(x0) (the data NLL for log-linear, whose sigma0 = 0)."""
    toy = UNI if graph == "uniform" else ABS
    terms = {"absorbing": score_terms_for(ABS, Absorbing(4, 1)), "uniform": score_terms_for(UNI, Uniform(3)),
             "masked": masked_terms_for(ABS)}[graph]
    sched = LogLinear(1e-3) if schedule == "loglinear" else Geometric(1e-4, 20.0)
    sigma0 = float(sched.total(torch.tensor(0.0, dtype=D)))
    x0, point = toy.support(), exact_point(toy, terms)
    bound = nelbo(point, sched, x0, generator=torch.Generator(), n=8, method="quadrature")
    reference = simpson_in_log_sigma(point, x0, sigma0) + (point(x0, torch.full((x0.shape[0],), sigma0, dtype=D), None)[1]
                                                           if sigma0 > 0 else 0.0)
    assert (bound.nll - reference).abs().max() < 1e-3
    nll = toy.nll(x0) if sigma0 == 0 else model_nll(toy, x0, sigma0, terms)
    assert (bound.nll >= nll - 1e-9).all(), float((bound.nll - nll).min())


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_swapping_the_rate_direction_breaks_the_bound(kind, monkeypatch):
    """The DSE weight is Q[x_t^i, y] (rate y -> x_t^i); the rate out of x_t^i is not tight."""
    toy, graph, schedule = (ABS, Absorbing(4, 1), LogLinear(0.0)) if kind == "absorbing" else \
        (UNI, Uniform(3), Geometric(1e-8, 40.0))
    rate_into = graph.rate_into
    # rate out of x^i to y is Q[y, x^i]: for the absorbing graph it is [y == mask] at unmasked x^i
    if kind == "absorbing":
        monkeypatch.setattr(graph, "rate_into", lambda x, dtype=D: torch.nn.functional.one_hot(
            torch.full_like(x, 1), 4).double() * (x != 1).unsqueeze(-1))
    else:  # symmetric Q: the out-rate equals the in-rate, so swap in a wrongly scaled one as the detector
        monkeypatch.setattr(graph, "rate_into", lambda x, dtype=D: 2.0 * rate_into(x, dtype))
    x0 = toy.support()
    bound = nelbo(exact_point(toy, score_terms_for(toy, graph)), schedule, x0, generator=torch.Generator(),
                  n=48, method="quadrature")
    assert (bound.nll - toy.nll(x0)).abs().max() > 0.05


@pytest.mark.parametrize("method", ["mc", "quadrature"])
def test_sampled_estimates_agree_with_the_exact_bound(method):
    """Draws of x_t (and of t for mc) average to the exact bound: reconstruction, main and tail parts
    are all present with Geometric for the score models and the tail with log-linear for masked."""
    g = torch.Generator().manual_seed(0)
    kw = dict(n=300) if method == "mc" else dict(n=8, repeats=40)
    for toy, exact_terms, estimate, schedule, quad_calls in [
        (ABS, score_terms_for(ABS, Absorbing(4, 1)),
         lambda x0, s, **k: score_nelbo(ABS.score_fn, Absorbing(4, 1), s, x0, generator=g, method=method, **k),
         Geometric(0.05, 20.0), 8 + 1),
        (UNI, score_terms_for(UNI, Uniform(3)),  # the uniform graph at its default schedule
         lambda x0, s, **k: score_nelbo(UNI.score_fn, Uniform(3), s, x0, generator=g, method=method, **k),
         Geometric(1e-4, 20.0), 8 + 1),
        (ABS, masked_terms_for(ABS),
         lambda x0, s, **k: masked_nelbo(ABS.denoise_fn, 1, 4, s, x0, generator=g, method=method, **k),
         LogLinear(1e-2), 8),
    ]:
        x0 = toy.support()
        exact = nelbo(exact_point(toy, exact_terms), schedule, x0, generator=g, n=48, method="quadrature")
        est = estimate(x0, schedule, **kw)
        z = (est.nll - exact.nll) / est.stderr
        assert z.abs().max() < 5.0, z
        assert est.nfe == (300 if method == "mc" else 40 * quad_calls)


def test_uniform_training_loss_is_the_bound_less_its_small_ends():
    """SEDD-uniform's training/validation loss estimates E_t~U[0,1][sigma_bar'(t) sum_i DSE_i]: the bound
    without its reconstruction term at sigma_min and without its tail past sigma_max.  With the exact
    score and the default Geometric(1e-4, 20) the missing part is the reconstruction term (the tail is
    < 1e-6) and costs 0.0018-0.0035 nats per 3-token sequence: validation loss and ``nll`` estimate
    the same quantity to about 1e-3 nats per token."""
    schedule = Geometric(1e-4, 20.0)
    x0, point = UNI.support(), exact_point(UNI, score_terms_for(UNI, Uniform(3)))
    nodes, weights = np.polynomial.legendre.leggauss(64)
    main = torch.zeros(x0.shape[0], dtype=D)
    for z, w in zip(nodes.tolist(), weights.tolist()):
        t = torch.tensor((z + 1) / 2, dtype=D)
        main += w / 2 * schedule.rate(t) * point(x0, schedule.total(t).expand(x0.shape[0]), None)[0]
    rec = point(x0, torch.full((x0.shape[0],), 1e-4, dtype=D), None)[1]
    ends = UNI.nll(x0) - main  # = reconstruction + tail, the bound being tight for the exact score
    assert (ends - rec).abs().max() < 1e-6
    assert rec.min() > 1e-3 and rec.max() < 5e-3, rec


def test_count_estimator_is_the_exact_bound():
    """One free position: -log p(x0^i | the rest), exactly, at every draw.  All free: the draws average to
    the tight bound -log p(x0) of the exact denoiser (sum over mask sizes k of (1/k) E_{|m|=k})."""
    x0 = ABS.support()
    g = torch.Generator().manual_seed(0)
    clean = torch.tensor([[True, False, True]]).expand_as(x0)
    one = masked_count_nelbo(ABS.denoise_fn, 1, x0, generator=g, n=3, clean_mask=clean)
    cond = ABS.nll(x0) + torch.log(ABS.data.reshape(3 * [4]).sum(1)[x0[:, 0], x0[:, 2]])  # -log p(x0^1 | x0^0, x0^2)
    assert torch.allclose(one.nll, cond, atol=1e-12) and (one.stderr < 1e-12).all() and one.nfe == 3
    est = masked_count_nelbo(ABS.denoise_fn, 1, x0, generator=g, n=3000)
    z = (est.nll - ABS.nll(x0)) / est.stderr
    assert z.abs().max() < 5.0 and (est.stderr < 0.1).all()


def test_aggregate_nll():
    nll = torch.tensor([2.0, 6.0], dtype=D)
    agg = aggregate_nll(nll, torch.tensor([1, 3]))
    assert agg.nll_per_token == pytest.approx(2.0)
    assert agg.ppl == pytest.approx(math.exp(2.0))
    assert agg.ppl_seq_mean == pytest.approx((math.exp(2.0) + math.exp(2.0)) / 2)
    assert aggregate_nll(nll, 2).ppl_seq_mean == pytest.approx((math.e + math.exp(3.0)) / 2)
    with pytest.raises(DlmError):
        nelbo(None, LogLinear(), torch.zeros(1, 2, dtype=torch.long), generator=torch.Generator(), method="simpson")
