"""DDPM / DDIM samplers on Gaussian toys with analytic denoisers, plus their contracts."""

import math

import pytest
import torch

from dlmkit.diffusion.gaussian import GaussianDiffusion
from dlmkit.sampling.continuous import (
    DDIMSampler,
    DDPMSampler,
    SampleOutput,
    Seq2SeqSampler,
    nearest_embedding,
    respaced_timesteps,
)

Z = 5.0  # tolerance in standard errors
SQRT = GaussianDiffusion.from_schedule("sqrt", 2000)
M = torch.tensor([1.0, -2.0])  # Gaussian toy: x0 ~ N(M, diag(S)), D = 2
S = torch.tensor([1.5, 0.25])
EYE = torch.eye(2)


def gaussian_x0(d):
    """E[x0 | x_t] for x0 ~ N(M, diag S): M + S a / (a^2 S + 1 - a^2) (x_t - a M), a = sqrt(abar_t)."""

    def x0_fn(x, t):
        a = d.gather(d.sqrt_alphas_cumprod, t, x)
        return M + S * a / (a * a * S + 1 - a * a) * (x - a * M)

    return x0_fn


def mixture_x0(d, mus, w, sig):
    """E[x0 | x_t] for x0 ~ sum_k w_k N(mu_k, sig^2 I): responsibilities times per-component means."""

    def x0_fn(x, t):
        a = d.gather(d.sqrt_alphas_cumprod, t, x).unsqueeze(-1)
        var = a * a * sig**2 + 1 - a * a
        xx = x.unsqueeze(-2)
        r = (w.log().unsqueeze(-1) - ((xx - a * mus) ** 2).sum(-1, keepdim=True) / (2 * var)).softmax(-2)
        return (r * (mus + sig**2 * a / var * (xx - a * mus))).sum(-2)

    return x0_fn


def _all_target(B, L, D=2):
    return torch.zeros(B, L, D), torch.ones(B, L, dtype=torch.bool)


def _check_gaussian(x, mean, var):
    """Sample mean, variances and covariance of x [N, 2] within Z standard errors of the law."""
    n = x.shape[0]
    assert ((x.mean(0) - mean).abs() < Z * (var / n).sqrt()).all(), (x.mean(0), mean)
    assert ((x.var(0) - var).abs() < Z * var * math.sqrt(2 / (n - 1))).all(), (x.var(0), var)
    cov = torch.cov(x.T)[0, 1]
    assert cov.abs() < Z * (var.prod() / n).sqrt()


@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_all_steps_reproduces_gaussian_data(variance):
    """The output is x0_hat at t = 0, i.e. E[x0 | x_{t=0}]: its law is the data law shrunk by
    Var[x0 | x_{t=0}] = S s^2 / (a^2 S + s^2), i.e. Cov = S - S s^2 / (a^2 S + s^2) (~1.5% here)."""
    x_cond, mask = _all_target(64, 128)
    out = DDPMSampler(SQRT, gaussian_x0(SQRT), variance=variance, embedding=EYE, decode="nearest").sample(
        x_cond, mask, torch.Generator().manual_seed(0)
    )
    assert out.nfe == 2000
    a2 = float(SQRT.alphas_cumprod[0])
    _check_gaussian(out.embeddings.reshape(-1, 2), M, S - S * (1 - a2) / (a2 * S + 1 - a2))


def _ddim_chain_law(d, K, eta):
    """Exact law of DDIM's output for the Gaussian toy, propagated per dimension in float64.

    Each step is affine in x_t plus independent noise: x_s = P x_t + Q + sigma z.
    """
    abar = d.alphas_cumprod.tolist()
    ts = respaced_timesteps(d.num_timesteps, K).tolist()
    means, variances = [], []
    for m, v in zip(M.tolist(), S.tolist()):
        mu, var = 0.0, 1.0
        for i in reversed(range(K)):
            at, as_ = abar[ts[i]], (abar[ts[i - 1]] if i > 0 else 1.0)
            k = v * math.sqrt(at) / (at * v + 1 - at)  # x0_hat = k x + (m - k sqrt(at) m)
            sig2 = eta**2 * (1 - as_) / (1 - at) * (1 - at / as_)

            def step(x):
                x0 = m + k * (x - math.sqrt(at) * m)
                eps = (x - math.sqrt(at) * x0) / math.sqrt(1 - at)
                return math.sqrt(as_) * x0 + math.sqrt(1 - as_ - sig2) * eps

            q = step(0.0)
            p = step(1.0) - q
            mu, var = p * mu + q, p * p * var + sig2
        means.append(mu)
        variances.append(var)
    return torch.tensor(means), torch.tensor(variances)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_50_matches_exact_respaced_chain(eta):
    """DDIM with 50 steps is a different (first-order) chain: its law is computed exactly and matched.

    Under-dispersion is DDIM's discretisation error, not sampling noise (see the second assert).
    """
    x_cond, mask = _all_target(64, 128)
    out = DDIMSampler(SQRT, gaussian_x0(SQRT), 50, eta=eta, embedding=EYE, decode="nearest").sample(
        x_cond, mask, torch.Generator().manual_seed(1)
    )
    assert out.nfe == 50
    mean, var = _ddim_chain_law(SQRT, 50, eta)
    _check_gaussian(out.embeddings.reshape(-1, 2), mean, var)
    assert ((mean - M).abs() < 1e-3).all() and ((var / S - 1).abs() < 0.4).all()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_mixture_weights_and_means(sampler):
    """Two well-separated components (weights 0.3 / 0.7): both samplers put the right mass on each."""
    d = GaussianDiffusion.from_schedule("sqrt", 1000)
    mus, w, sig = torch.tensor([[-1.5, 0.5], [1.5, -0.5]]), torch.tensor([0.3, 0.7]), 0.3
    x0_fn = mixture_x0(d, mus, w, sig)
    kw = dict(embedding=EYE, decode="nearest")
    s = DDPMSampler(d, x0_fn, **kw) if sampler == "ddpm" else DDIMSampler(d, x0_fn, 50, **kw)
    x_cond, mask = _all_target(64, 64)
    x = s.sample(x_cond, mask, torch.Generator().manual_seed(2)).embeddings.reshape(-1, 2)
    n = x.shape[0]
    k = torch.cdist(x, mus).argmin(-1)
    frac = (k == 1).float().mean()
    assert abs(frac - 0.7) < Z * math.sqrt(0.21 / n)
    for j in (0, 1):
        xj = x[k == j]
        assert ((xj.mean(0) - mus[j]).abs() < Z * sig / math.sqrt(len(xj)) + 0.02).all()


def _cond_batch(seed=0, B=3, L=7, D=4):
    g = torch.Generator().manual_seed(seed)
    x_cond = torch.randn(B, L, D, generator=g)
    mask = torch.rand(B, L, generator=g) < 0.6
    mask[:, 0] = False
    mask[:, -1] = True
    return x_cond, mask


def _samplers(d, x0_fn, table, **kw):
    return [
        DDPMSampler(d, x0_fn, embedding=table, **kw),
        DDIMSampler(d, x0_fn, 10, embedding=table, **kw),
        DDIMSampler(d, x0_fn, 10, eta=1.0, embedding=table, **kw),
    ]


def test_source_positions_bit_identical_and_reproducible():
    d = GaussianDiffusion.from_schedule("sqrt", 50)
    x_cond, mask = _cond_batch()
    table = torch.randn(11, 4, generator=torch.Generator().manual_seed(5))
    shift = lambda x, t: 0.5 * x + 1.0  # noqa: E731  (would move the source if it were not re-imposed)
    for s in _samplers(d, shift, table, decode="nearest"):
        assert isinstance(s, Seq2SeqSampler)
        a = s.sample(x_cond, mask, torch.Generator().manual_seed(7))
        b = s.sample(x_cond, mask, torch.Generator().manual_seed(7))
        assert torch.equal(a.embeddings[~mask], x_cond[~mask])
        assert torch.equal(a.embeddings, b.embeddings) and torch.equal(a.token_ids, b.token_ids)
        assert a.token_ids.shape == mask.shape and a.token_ids.dtype == torch.long


def test_clamping_lands_on_the_embedding_table():
    d = GaussianDiffusion.from_schedule("sqrt", 50)
    x_cond, mask = _cond_batch(1)
    table = torch.randn(11, 4, generator=torch.Generator().manual_seed(6))
    for s in _samplers(d, lambda x, t: 0.9 * x, table, decode="nearest", clamp_step=0):
        out = s.sample(x_cond, mask, torch.Generator().manual_seed(0))
        assert torch.equal(out.embeddings[mask], table[out.token_ids][mask])
    points = torch.tensor([[0.0, 0.0], [3.0, 3.0], [1.0, 1.0]])
    ids, pts = nearest_embedding(torch.tensor([[0.1, 0.0], [2.9, 3.2]]), points)
    assert ids.tolist() == [0, 1] and torch.equal(pts, torch.tensor([[0.0, 0.0], [3.0, 3.0]]))


def test_clamp_step_applies_from_t_upwards():
    d = GaussianDiffusion.from_schedule("sqrt", 20)
    table = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    seen = []
    x0_fn = lambda x, t: (seen.append(int(t[0])), 0.5 * x)[1]  # noqa: E731
    s = DDPMSampler(d, x0_fn, embedding=table, decode="nearest", clamp_step=8)
    x_cond, mask = _cond_batch(2)
    out = s.sample(x_cond, mask)
    assert seen == list(range(19, -1, -1))
    assert not torch.equal(out.embeddings[mask], table[out.token_ids][mask])  # t = 0 is below clamp_step


def test_rounding_decode_is_argmax_of_logits():
    d = GaussianDiffusion.from_schedule("sqrt", 50)
    x_cond, mask = _cond_batch(3)
    W = torch.randn(13, 4, generator=torch.Generator().manual_seed(1))
    logits_fn = lambda x: x @ W.T  # noqa: E731
    for s in _samplers(d, lambda x, t: 0.8 * x, None, logits_fn=logits_fn):
        out = s.sample(x_cond, mask, torch.Generator().manual_seed(0))
        assert torch.equal(out.token_ids, logits_fn(out.embeddings).argmax(-1))


def test_ddim_eta1_all_steps_equals_ddpm():
    d = GaussianDiffusion.from_schedule("cosine", 60)
    x_cond, mask = _cond_batch(4)
    x0_fn = lambda x, t: torch.tanh(x) + 0.01 * t.view(-1, 1, 1)  # noqa: E731
    table = torch.eye(4)
    a = DDPMSampler(d, x0_fn, embedding=table, decode="nearest").sample(
        x_cond, mask, torch.Generator().manual_seed(9)
    )
    b = DDIMSampler(d, x0_fn, 60, eta=1.0, embedding=table, decode="nearest").sample(
        x_cond, mask, torch.Generator().manual_seed(9)
    )
    assert torch.allclose(a.embeddings, b.embeddings, atol=1e-4)


def test_ddim_calls_denoiser_at_respaced_original_timesteps():
    seen = []
    s = DDIMSampler(SQRT, lambda x, t: (seen.append(t.tolist()), x)[1], 5, embedding=EYE, decode="nearest")
    out = s.sample(*_all_target(2, 3))
    assert out.nfe == 5 and seen == [[t, t] for t in (1999, 1499, 1000, 500, 0)]


def test_respaced_timesteps():
    assert respaced_timesteps(2000, 50)[[0, -1]].tolist() == [0, 1999]
    for T, K in [(2000, 50), (2000, 1999), (10, 10), (7, 3)]:
        ts = respaced_timesteps(T, K)
        assert len(ts) == K and (ts.diff() > 0).all()
    assert respaced_timesteps(10, 10).tolist() == list(range(10))
    assert respaced_timesteps(10, 1).tolist() == [9]
    with pytest.raises(ValueError):
        respaced_timesteps(10, 11)


def test_one_step_generator_fits_the_protocol():
    class OneStep:
        def sample(self, x_cond, target_mask, generator=None):
            x = torch.where(target_mask.unsqueeze(-1), torch.zeros_like(x_cond), x_cond)
            return SampleOutput(tokens=x.argmax(-1), nfe=1, embeddings=x)

    assert isinstance(OneStep(), Seq2SeqSampler)
    one = DDIMSampler(SQRT, lambda x, t: x, 1, embedding=EYE, decode="nearest")
    assert one.sample(*_all_target(1, 2)).nfe == 1


def test_bad_configurations_are_rejected():
    with pytest.raises(ValueError, match="logits_fn"):
        DDPMSampler(SQRT, lambda x, t: x)
    with pytest.raises(ValueError, match="embedding"):
        DDIMSampler(SQRT, lambda x, t: x, 10, logits_fn=lambda x: x, clamp_step=0)
    with pytest.raises(ValueError):
        DDPMSampler(SQRT, lambda x, t: x, logits_fn=lambda x: x, variance="learned")
