"""Noise schedules and the precomputed arrays of GaussianDiffusion."""

import math

import numpy as np
import pytest
import torch

from dlmkit.diffusion.gaussian import GaussianDiffusion, get_schedule
from dlmkit.errors import DlmError


def test_sqrt_schedule_hand_numbers():
    # alpha_bar(u) = 1 - sqrt(u + 1e-4); beta_i = 1 - alpha_bar((i+1)/T) / alpha_bar(i/T).
    # beta_0 = 1 - (1 - sqrt(0.0006)) / (1 - 0.01) = 1 - 0.9755051 / 0.99 = 0.0146413
    # abar[999] = alpha_bar(0.5) / alpha_bar(0) = (1 - sqrt(0.5001)) / 0.99 = 0.2957803
    # beta_1999 = 1 - alpha_bar(1) / alpha_bar(0.9995) < 0 ratio -> clipped to 0.999
    betas = get_schedule("sqrt", 2000)
    assert betas.shape == (2000,) and betas.dtype == np.float64
    assert betas[0] == pytest.approx(0.0146413, abs=1e-7)
    assert betas[1] == pytest.approx(1 - (1 - math.sqrt(0.0011)) / (1 - math.sqrt(0.0006)), rel=1e-12)
    d = GaussianDiffusion(betas)
    assert float(d.alphas_cumprod[999]) == pytest.approx(0.2957803, abs=1e-7)
    assert betas[-1] == 0.999
    assert np.all(np.diff(d.alphas_cumprod.numpy()) < 0)


def test_cosine_and_linear_schedules():
    lin = get_schedule("linear", 2000)
    assert lin[0] == pytest.approx(0.5e-4) and lin[-1] == pytest.approx(0.01)
    cos = get_schedule("cosine", 1000)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert float(GaussianDiffusion(cos).alphas_cumprod[499]) == pytest.approx(f(0.5) / f(0.0), rel=1e-10)
    assert cos.max() <= 0.999


def test_unknown_schedule_is_a_user_error():
    with pytest.raises(DlmError, match="unknown noise schedule"):
        get_schedule("quadratic", 100)


def test_posterior_arrays():
    d = GaussianDiffusion.from_schedule("sqrt", 100)
    assert float(d.posterior_variance[0]) == 0.0  # abar_{-1} = 1: q(x_{-1} | x_0, x_0) is a point mass
    assert float(d.posterior_mean_coef1[0]) == pytest.approx(1.0) and float(d.posterior_mean_coef2[0]) == 0.0
    lv = d.posterior_log_variance_clipped
    assert float(lv[0]) == float(lv[1]) == pytest.approx(math.log(float(d.posterior_variance[1])))
    assert torch.allclose(lv[1:], d.posterior_variance[1:].log())
