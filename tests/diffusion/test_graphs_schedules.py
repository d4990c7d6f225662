"""Closed forms of the schedules and graphs against finite differences and matrix exponentials."""

import math

import pytest
import torch
from toy import Toy, random_categorical, rate_matrix

from dlmkit.diffusion.graphs import Absorbing, Uniform
from dlmkit.diffusion.schedules import Geometric, LogLinear, get_schedule
from dlmkit.diffusion.timesteps import sample_t
from dlmkit.errors import DlmError

D = torch.float64


@pytest.mark.parametrize("schedule", [LogLinear(1e-3), LogLinear(0.0), Geometric(1e-4, 20.0), Geometric(0.1, 3.0)])
def test_rate_is_derivative_of_total(schedule):
    t = torch.linspace(0.01, 0.99, 50, dtype=D)
    h = 1e-6
    numeric = (schedule.total(t + h) - schedule.total(t - h)) / (2 * h)
    assert torch.allclose(schedule.rate(t), numeric, rtol=1e-6)


def test_schedule_values_and_registry():
    assert float(LogLinear(1e-3).total(torch.tensor(1.0, dtype=D))) == pytest.approx(-math.log(1e-3))
    assert float(LogLinear(0.3).total(torch.tensor(0.0, dtype=D))) == 0.0
    g = get_schedule("geometric", sigma_min=1e-3, sigma_max=5.0)
    assert float(g.total(torch.tensor(0.0, dtype=D))) == pytest.approx(1e-3)
    assert float(g.total(torch.tensor(1.0, dtype=D))) == pytest.approx(5.0)
    with pytest.raises(DlmError):
        get_schedule("no-such-schedule")  # (was "cosine", now a registered schedule)
    with pytest.raises(DlmError):
        get_schedule("loglinear", sigma_max=3.0)


GRAPHS = [("absorbing", Absorbing(5, 2), 2), ("uniform", Uniform(4), None)]


@pytest.mark.parametrize("kind,graph,mask_id", GRAPHS)
def test_transition_and_rates_match_definition(kind, graph, mask_id):
    q = rate_matrix(kind, graph.vocab_size, mask_id)
    x = torch.arange(graph.vocab_size).unsqueeze(0)  # every token once
    for sigma in [1e-3, 0.4, 3.0]:
        expm = torch.linalg.matrix_exp(sigma * q)  # [y, x0]
        s = torch.tensor([sigma], dtype=D)
        assert torch.allclose(graph.transition(x, s)[0], expm.T, atol=1e-12)  # row x0 -> probs over y
        assert torch.allclose(graph.transp_transition(x, s)[0], expm, atol=1e-12)  # row x -> p(x | y)
    into = graph.rate_into(x)[0].double()
    assert torch.allclose(into, q - torch.diag(torch.diag(q)), atol=1e-7)  # Q[x, y], y != x


@pytest.mark.parametrize("kind,graph,mask_id", GRAPHS)
def test_staggered_score_inverts_transition(kind, graph, mask_id):
    """staggered_score(s, d) = exp(-dQ)^T s for any ratio vector s."""
    q = rate_matrix(kind, graph.vocab_size, mask_id)
    g = torch.Generator().manual_seed(0)
    x = torch.arange(graph.vocab_size).unsqueeze(0)
    log_s = torch.randn(1, graph.vocab_size, graph.vocab_size, generator=g, dtype=D)
    d = 0.7
    stag = graph.staggered_score(x, log_s, torch.tensor([d], dtype=D))[0]
    s = log_s[0].exp()
    s[torch.arange(graph.vocab_size), torch.arange(graph.vocab_size)] = 1.0
    assert torch.allclose(stag, s @ torch.linalg.matrix_exp(-d * q).T, atol=1e-10)


@pytest.mark.parametrize("kind,graph,mask_id", GRAPHS)
def test_sample_forward_matches_transition(kind, graph, mask_id):
    g = torch.Generator().manual_seed(1)
    n, sigma = 40000, 0.8
    x0 = torch.full((n, 1), 1 if kind == "uniform" else 3)
    xt = graph.sample_forward(x0, torch.full((n,), sigma, dtype=D), g)
    freq = torch.bincount(xt[:, 0], minlength=graph.vocab_size).double() / n
    exact = graph.transition(x0[:1], torch.tensor([sigma], dtype=D))[0, 0]
    assert 0.5 * (freq - exact).abs().sum() < 0.015
    clean = torch.ones(n, 1, dtype=torch.bool)
    assert torch.equal(graph.sample_forward(x0, torch.full((n,), sigma, dtype=D), g, clean), x0)


def test_prior():
    g = torch.Generator().manual_seed(0)
    a, u = Absorbing(4, 0), Uniform(3)
    xa = a.sample_prior(5, 3, g)
    assert (xa == 0).all() and (a.prior_log_prob(xa) == 0).all()
    assert a.prior_log_prob(torch.tensor([[0, 1, 0]])).item() == -math.inf
    assert u.prior_log_prob(u.sample_prior(2, 3, g)).tolist() == [-3 * math.log(3)] * 2


def test_tweedie_probs_are_exact_single_position_posteriors():
    """With the exact score, tweedie_probs(x_t, d) = p(x_{sigma-d}^i | x_sigma) exactly (SEDD Thm 4.2)."""
    for kind, graph, mask_id in [("absorbing", Absorbing(4, 1), 1), ("uniform", Uniform(3), None)]:
        toy = Toy(random_categorical(3, 3, seed=5), 3, 3, kind, mask_id)
        sigma_t, sigma_s = 1.3, 0.5
        x = toy.states
        probs = graph.tweedie_probs(x, toy.score_fn(x, torch.full((x.shape[0],), sigma_t, dtype=D)),
                                    torch.full((x.shape[0],), sigma_t - sigma_s, dtype=D))
        # exact: joint over (x_s, x_t) = p_s(x_s) q_{t-s}(x_t | x_s)
        joint = toy.joint_transition(sigma_t - sigma_s) * toy.marginal(sigma_s).unsqueeze(0)  # [x_t, x_s]
        onehot = torch.nn.functional.one_hot(toy.states, toy.vocab).double()
        exact = torch.einsum("ab,biv->aiv", joint, onehot) / joint.sum(1)[:, None, None]
        assert torch.allclose(probs, exact, atol=1e-10)
        assert torch.allclose(probs.sum(-1), torch.ones_like(probs[..., 0]), atol=1e-10)


def test_sample_t():
    g = torch.Generator().manual_seed(0)
    t = sample_t(64, g, t_min=0.2)
    assert t.dtype == D and (t >= 0.2).all() and (t < 1).all()
    gaps = ((t - 0.2) / 0.8).sort().values.diff()
    assert torch.allclose(gaps, torch.full_like(gaps, 1 / 64))  # one point per stratum
    t = sample_t(20000, g, antithetic=False, t_min=0.0)
    assert abs(float(t.mean()) - 0.5) < 0.01
    with pytest.raises(DlmError):
        sample_t(4, g, t_min=1.0)
