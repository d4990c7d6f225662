"""DLM-One's losses against exact answers: finite differences, a Gaussian toy with analytic
denoisers, and the signs of the adversarial terms (Eqs. 5 and 6)."""

import math

import pytest
import torch

from dlmkit.diffusion.gaussian import GaussianDiffusion
from dlmkit.diffusion import sid

torch.set_num_threads(1)


def smooth_denoiser(seed: int, D: int):
    """A fixed smooth nonlinear ``f(x_t, t)`` (float64) standing in for a denoiser network."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, generator=g, dtype=torch.float64) / math.sqrt(D)
    c = torch.randn(D, generator=g, dtype=torch.float64)

    def f(x, t):
        s = (t.double() / 100.0).view(-1, 1, 1)
        return torch.tanh(x @ A + c * s) + 0.3 * x

    return f


def central_differences(fn, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """d fn / d x by central differences, one element at a time (float64)."""
    out = torch.zeros_like(x)
    for idx in torch.cartesian_prod(*(torch.arange(n) for n in x.shape)).tolist():
        idx = tuple(idx)
        xp, xm = x.clone(), x.clone()
        xp[idx] += eps
        xm[idx] -= eps
        out[idx] = (fn(xp) - fn(xm)) / (2 * eps)
    return out


@pytest.mark.parametrize("weighting", ["snr", "unit"])
def test_sid_loss_gradient_matches_finite_differences(weighting):
    diff = GaussianDiffusion.from_schedule("sqrt", 200)
    B, L, D = 2, 5, 3
    g = torch.Generator().manual_seed(0)
    x_g = torch.randn(B, L, D, generator=g, dtype=torch.float64)
    noise = torch.randn(B, L, D, generator=g, dtype=torch.float64)
    mask = torch.tensor([[False, True, True, True, False], [False, False, True, True, True]])
    t = torch.tensor([20, 150])
    teacher, fake = smooth_denoiser(1, D), smooth_denoiser(2, D)

    def loss_of(x):
        rows, _ = sid.sid_generator_loss(diff, x, teacher, fake, t, mask, mu=1.2, weighting=weighting, noise=noise)
        return rows.sum()

    x = x_g.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_of(x), x)
    fd = central_differences(loss_of, x_g)
    assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-7), (grad - fd).abs().max()
    assert grad[mask].abs().sum() > 0


def test_sid_loss_algebraic_forms_agree():
    """(1 - mu)||d||^2 + d.(f_psi - x_g) == d.(f_phi - x_g) - mu ||d||^2 (the two ways Eq. 4 is written)."""
    g = torch.Generator().manual_seed(3)
    x_g, fp, fq = (torch.randn(2, 4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    w = torch.ones(2, dtype=torch.float64)
    a = sid.sid_loss_terms(x_g, fp, fq, w, None, 1.2)
    d = fp - fq
    b = ((d * (fp - x_g)).sum((1, 2)) - 1.2 * (d * d).sum((1, 2))) / 4
    assert torch.allclose(a, b)
    # exact fake score (psi == phi): the loss and its value vanish
    assert torch.allclose(sid.sid_loss_terms(x_g, fp, fp, w, None, 1.2), torch.zeros(2, dtype=torch.float64))


def gaussian_denoiser(diff: GaussianDiffusion, mean, std):
    """Exact E[x_0 | x_t] for x_0 ~ N(mean, std^2) per dim: mean + a s^2 / (a^2 s^2 + sigma^2) (x_t - a mean)."""

    def f(x_t, t):
        abar = diff.alphas_cumprod[t].view(-1, 1, 1).to(x_t.dtype)
        a, var = abar.sqrt(), 1.0 - abar
        m, s2 = mean, std**2
        return m + a * s2 / (a * a * s2 + var) * (x_t - a * m)

    return f


def test_one_step_gaussian_generator_converges_to_the_data():
    """Exact teacher and exact fake score (Gaussian in, Gaussian out): SiD (mu = 1.2) moves a linear
    one-step generator x_g = m_g + s_g z to the data's mean and standard deviation."""
    torch.manual_seed(0)
    diff = GaussianDiffusion.from_schedule("sqrt", 200)
    D = 8
    m_data = torch.linspace(-1.5, 1.5, D, dtype=torch.float64)
    s_data = torch.linspace(0.3, 1.2, D, dtype=torch.float64)
    m_g = torch.zeros(D, dtype=torch.float64, requires_grad=True)
    log_s = torch.zeros(D, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([m_g, log_s], lr=0.03, betas=(0.0, 0.999))
    teacher = gaussian_denoiser(diff, m_data, s_data)
    g = torch.Generator().manual_seed(1)
    for _ in range(400):
        z = torch.randn(256, 1, D, generator=g, dtype=torch.float64)
        x_g = m_g + log_s.exp() * z
        fake = gaussian_denoiser(diff, m_g.detach(), log_s.exp().detach())  # psi = exact score of p_theta
        t = sid.sample_t(256, 0, 190, generator=g)
        rows, _ = sid.sid_generator_loss(diff, x_g, teacher, fake, t, None, mu=1.2, weighting="sid", generator=g)
        opt.zero_grad()
        rows.mean().backward()
        opt.step()
    err_m = (m_g.detach() - m_data).abs().max()
    err_s = ((log_s.exp().detach() - s_data) / s_data).abs().max()
    assert err_m < 0.1 and err_s < 0.15, (err_m, err_s, log_s.exp(), s_data)


def test_dsm_loss_is_minimised_by_the_generated_sample():
    x_g = torch.randn(3, 4, 2)
    mask = torch.ones(3, 4, dtype=torch.bool)
    assert torch.allclose(sid.dsm_loss(x_g, x_g, mask), torch.zeros(3))
    assert (sid.dsm_loss(x_g + 0.1, x_g, mask) > 0).all()


def test_adversarial_signs_follow_eqs_5_and_6():
    """Eq. 5 labels real pairs 1 and generated pairs 0; Eq. 6 asks the generator to look real."""
    big = torch.tensor([6.0])
    # a discriminator that is right (real -> D~1, fake -> D~0) has a small loss, a wrong one a large loss
    right = sid.discriminator_loss(big, -big)
    wrong = sid.discriminator_loss(-big, big)
    assert right.item() < 0.01 and wrong.item() > 10
    assert torch.allclose(sid.discriminator_loss(torch.tensor([0.0]), torch.tensor([0.0])), torch.tensor([2 * math.log(2)]))
    # psi's gradient pushes real logits up and fake logits down
    lr, lf = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    sid.discriminator_loss(lr, lf).sum().backward()
    assert lr.grad.item() < 0 < lf.grad.item()
    # the generator's loss is small when psi calls its samples real, and its gradient raises the fake logit
    assert sid.generator_adv_loss(big).item() < 0.01 < 5 < sid.generator_adv_loss(-big).item()
    lf = torch.zeros(1, requires_grad=True)
    sid.generator_adv_loss(lf).sum().backward()
    assert lf.grad.item() < 0
    # Eq. 6 is -log D, not log(1 - D) (the non-saturating form): its value at D = sigmoid(l)
    l = torch.tensor([0.7])
    assert torch.allclose(sid.generator_adv_loss(l), -torch.log(torch.sigmoid(l)))
    assert torch.allclose(sid.discriminator_loss(l, -l), -torch.log(torch.sigmoid(l)) - torch.log(1 - torch.sigmoid(-l)))


def test_sid_weight_choices():
    diff = GaussianDiffusion.from_schedule("sqrt", 200)
    x = torch.zeros(2, 3, 4)
    f = torch.full((2, 3, 4), 0.5)
    t = torch.tensor([10, 100])
    assert torch.allclose(sid.sid_weight(diff, t, x, f, None, "sid"), torch.full((2,), 2.0))
    snr = sid.sid_weight(diff, t, x, f, None, "snr")
    abar = diff.alphas_cumprod[t].float()
    assert torch.allclose(snr, abar / (1 - abar) ** 2)
    with pytest.raises(Exception):
        sid.sid_weight(diff, t, x, f, None, "bogus")


def test_sid_loss_equals_sids_per_element_form_with_masks():
    """Re-computation of SiD's generator loss written out per element, independent of ``sid``'s helpers:
    sum over target elements of (f_phi - f_psi) * ((f_phi - x_g) - mu (f_phi - f_psi)), divided by
    mean |x_g - f_phi| over the same elements (SiD's omega_t a_t^2 / sigma_t^4); dlmkit reports it per
    target position (divided by the row's number of target positions)."""
    diff = GaussianDiffusion.from_schedule("sqrt", 200)
    B, L, D = 3, 6, 4
    g = torch.Generator().manual_seed(5)
    x_g = torch.randn(B, L, D, generator=g, dtype=torch.float64)
    noise = torch.randn(B, L, D, generator=g, dtype=torch.float64)
    mask = torch.tensor([[False, False, True, True, True, True], [False, True, True, True, True, True], [False] * 3 + [True] * 3])
    t = torch.tensor([3, 90, 180])
    teacher, fake = smooth_denoiser(11, D), smooth_denoiser(12, D)
    mu = 1.2
    rows, parts = sid.sid_generator_loss(diff, x_g, teacher, fake, t, mask, mu=mu, weighting="sid", noise=noise)
    abar = diff.alphas_cumprod[t].view(-1, 1, 1)
    x_t = torch.where(mask.unsqueeze(-1), abar.sqrt() * x_g + (1 - abar).sqrt() * noise, x_g)
    assert torch.allclose(parts["x_t"], x_t, rtol=0, atol=1e-12)
    fp, fq = teacher(x_t, t), fake(x_t, t)
    for b in range(B):
        m = mask[b]
        e_g, e_p, e_q = x_g[b][m], fp[b][m], fq[b][m]
        ref = ((e_p - e_q) * ((e_p - e_g) - mu * (e_p - e_q))).sum() / (e_g - e_p).abs().mean()
        assert torch.allclose(rows[b] * m.sum(), ref, rtol=1e-12), (b, rows[b] * m.sum(), ref)


def test_sid_weighting_is_a_stop_gradient():
    """With SiD's weight 1 / mean|x_g - f_phi| the gradient is that of the loss with the weight held
    at its value (finite differences with the weight frozen), not of the loss with a live weight."""
    diff = GaussianDiffusion.from_schedule("sqrt", 200)
    B, L, D = 2, 4, 3
    g = torch.Generator().manual_seed(8)
    x_g = torch.randn(B, L, D, generator=g, dtype=torch.float64)
    noise = torch.randn(B, L, D, generator=g, dtype=torch.float64)
    mask = torch.tensor([[False, True, True, True], [False, False, True, True]])
    t = torch.tensor([40, 120])
    teacher, fake = smooth_denoiser(3, D), smooth_denoiser(4, D)
    x = x_g.clone().requires_grad_(True)
    rows, parts = sid.sid_generator_loss(diff, x, teacher, fake, t, mask, mu=1.2, weighting="sid", noise=noise)
    (grad,) = torch.autograd.grad(rows.sum(), x)
    w = parts["w"].detach()
    assert not parts["w"].requires_grad

    def frozen(xx):
        x_t = diff.q_sample(xx, t, mask, noise=noise)
        return sid.sid_loss_terms(xx, teacher(x_t, t), fake(x_t, t), w, mask, 1.2).sum()

    def live(xx):
        return sid.sid_generator_loss(diff, xx, teacher, fake, t, mask, mu=1.2, weighting="sid", noise=noise)[0].sum()

    assert torch.allclose(grad, central_differences(frozen, x_g), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(grad, central_differences(live, x_g), rtol=1e-3, atol=1e-5)  # the weight's own derivative is left out


def test_adversarial_losses_are_bce_with_real_1_and_fake_0():
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(2)
    lr, lf = torch.randn(16, generator=g) * 3, torch.randn(16, generator=g) * 3
    bce = F.binary_cross_entropy_with_logits
    ref_d = bce(lr, torch.ones(16), reduction="none") + bce(lf, torch.zeros(16), reduction="none")
    assert torch.allclose(sid.discriminator_loss(lr, lf), ref_d, atol=1e-6)
    assert torch.allclose(sid.generator_adv_loss(lf), bce(lf, torch.ones(16), reduction="none"), atol=1e-6)
