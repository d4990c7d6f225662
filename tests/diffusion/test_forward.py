"""q(x_t | x_0) and q(x_{t-1} | x_t, x_0) against sampling and a direct Bayes computation."""

import math

import pytest
import torch

from dlmkit.diffusion.gaussian import GaussianDiffusion

Z = 5.0  # tolerance in standard errors


@pytest.mark.parametrize("t", [0, 300, 1999])
def test_q_sample_moments(t):
    d = GaussianDiffusion.from_schedule("sqrt", 2000)
    n = 20000
    x0 = torch.tensor([1.5, -0.5, 3.0], dtype=torch.float64).expand(n, 1, 3)
    tt = torch.full((n,), t)
    xt = d.q_sample(x0, tt, generator=torch.Generator().manual_seed(t))
    abar = float(d.alphas_cumprod[t])
    mean, var = d.q_mean_variance(x0[:1], tt[:1])
    assert torch.allclose(mean.flatten(), math.sqrt(abar) * x0[0, 0])
    assert float(var) == pytest.approx(1 - abar)
    emp_mean, emp_var = xt.mean(0).flatten(), xt.var(0).flatten()
    assert (emp_mean - mean.flatten()).abs().max() < Z * math.sqrt((1 - abar) / n)
    assert (emp_var - (1 - abar)).abs().max() < Z * (1 - abar) * math.sqrt(2 / (n - 1))


def test_partial_noising_keeps_source_bit_identical():
    d = GaussianDiffusion.from_schedule("sqrt", 2000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 6, 8, generator=g)
    mask = torch.rand(4, 6, generator=g) < 0.5
    xt = d.q_sample(x0, torch.tensor([0, 10, 1000, 1999]), mask, generator=g)
    assert torch.equal(xt[~mask], x0[~mask])
    assert not torch.isclose(xt[mask], x0[mask]).any()


def _bayes_posterior(betas, t, x0, xt):
    """q(x_{t-1}|x_t,x_0) ∝ N(x_t; sqrt(a_t) x_{t-1}, b_t) N(x_{t-1}; sqrt(abar_{t-1}) x_0, 1-abar_{t-1}),
    by completing the square in x_{t-1}: precision = a_t/b_t + 1/(1-abar_{t-1})."""
    abar_prev = 1.0
    for b in betas[:t]:
        abar_prev *= 1.0 - b
    b = betas[t]
    prec = (1 - b) / b + 1 / (1 - abar_prev)
    mean = (math.sqrt(1 - b) * xt / b + math.sqrt(abar_prev) * x0 / (1 - abar_prev)) / prec
    return mean, 1 / prec


@pytest.mark.parametrize("schedule", ["sqrt", "cosine", "linear"])
@pytest.mark.parametrize("t", [1, 7, 500, 1999])
def test_posterior_matches_bayes(schedule, t):
    d = GaussianDiffusion.from_schedule(schedule, 2000)
    betas = d.betas.tolist()
    x0, xt = 0.7, -1.3
    mean, var, logvar = d.q_posterior_mean_variance(
        torch.tensor([[[x0]]], dtype=torch.float64),
        torch.tensor([[[xt]]], dtype=torch.float64),
        torch.tensor([t]),
    )
    ref_mean, ref_var = _bayes_posterior(betas, t, x0, xt)
    assert float(mean) == pytest.approx(ref_mean, rel=1e-9, abs=1e-12)
    assert float(var) == pytest.approx(ref_var, rel=1e-9)
    assert float(logvar) == pytest.approx(math.log(ref_var), rel=1e-9)


def test_posterior_at_t0_is_x0():
    d = GaussianDiffusion.from_schedule("sqrt", 2000)
    x0, xt = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mean, var, _ = d.q_posterior_mean_variance(x0, xt, torch.zeros(2, dtype=torch.long))
    assert torch.allclose(mean, x0) and (var == 0).all()
