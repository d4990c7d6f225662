"""The cosine masking schedule: its closed form, its registration, and the exact masked NELBO under it."""

import math

import pytest
import torch
from toy import Toy, exact_point, random_categorical

from dlmkit.diffusion.likelihood import masked_nelbo, masked_terms, nelbo
from dlmkit.diffusion.schedules import SCHEDULES, Cosine, NoiseSchedule, schedule_from_options
from dlmkit.errors import DlmError

D = torch.float64
ABS = Toy(random_categorical(3, 3, seed=0), 3, 3, "absorbing", mask_id=1)


def test_closed_form_and_rate_is_the_derivative():
    t = torch.linspace(0.0, 0.99, 23, dtype=D, requires_grad=True)
    for eps in [0.0, 1e-3, 0.2]:
        s = Cosine(eps)
        alpha = eps + (1 - eps) * torch.cos(math.pi * t / 2)
        assert torch.allclose(s.total(t), -alpha.log(), atol=1e-14)
        (grad,) = torch.autograd.grad(s.total(t).sum(), t)
        assert torch.allclose(s.rate(t), grad, rtol=1e-10, atol=1e-12)
    assert float(Cosine(0.0).total(torch.tensor(0.0, dtype=D))) == 0.0
    assert math.isinf(float(Cosine(0.0).total(torch.tensor(1.0, dtype=D))))
    assert math.isclose(float(Cosine(0.01).total(torch.tensor(1.0, dtype=D))), -math.log(0.01), rel_tol=1e-12)


def test_registered_with_its_parameter():
    assert SCHEDULES["cosine"] is Cosine and Cosine.name == "cosine"
    assert Cosine.parameters() == {"eps": 1e-3}
    s = schedule_from_options({"schedule": "cosine", "eps": 0.05, "sigma_min": 1e-4, "sigma_max": 20.0}, "loglinear")
    assert isinstance(s, Cosine) and s.eps == 0.05  # takes its own parameter, ignores the others
    with pytest.raises(DlmError, match="0 <= eps < 1"):
        schedule_from_options({"schedule": "cosine", "eps": 1.0}, "loglinear")
    with pytest.raises(DlmError, match="registered twice"):
        type("Again", (NoiseSchedule,), {}, name="cosine")


@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_masked_nelbo_is_the_exact_nll_with_the_exact_denoiser(eps):
    """Under masking the NELBO of the exact denoiser is -log p(x0) for any schedule with alpha(0) = 1."""
    x0 = ABS.support()
    terms = lambda x0, xt, s: masked_terms(ABS.denoise_fn(xt, s), x0, xt, s, ABS.mask_id)
    bound = nelbo(exact_point(ABS, terms), Cosine(eps), x0, generator=torch.Generator(), n=8, method="quadrature")
    assert torch.allclose(bound.nll, ABS.nll(x0), atol=1e-5, rtol=0)


def test_monte_carlo_over_cosine_times_agrees_with_the_exact_nll():
    """Uniform t weighted by the cosine rate: the draws average to -log p(x0) (checks ``rate``)."""
    x0 = ABS.support()
    est = masked_nelbo(ABS.denoise_fn, 1, 4, Cosine(1e-3), x0, generator=torch.Generator().manual_seed(0), n=400, method="mc")
    z = (est.nll - ABS.nll(x0)) / est.stderr
    assert z.abs().max() < 5.0, z
