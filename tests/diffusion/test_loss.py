"""DiffuSeq's training objective on hand-computable cases."""

import math

import pytest
import torch

from dlmkit.diffusion.gaussian import GaussianDiffusion, training_losses

E = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]], dtype=torch.float64)  # V=3, D=2
IDS = torch.tensor([[0, 1, 2], [2, 2, 1]])
MASK = torch.tensor([[False, True, True], [False, False, True]])
C = torch.tensor([0.5, -0.5], dtype=torch.float64)  # the constant "prediction"


def _ce(x, token):
    logits = [sum(a * b for a, b in zip(x, row)) for row in E.tolist()]
    return math.log(sum(math.exp(v) for v in logits)) - logits[token]


def _diffusion():
    return GaussianDiffusion([0.1, 0.2, 0.3, 0.4])  # abar = 0.9, 0.72, 0.504, 0.3024


def test_loss_hand_computed():
    emb = E[IDS]
    const = lambda x, t: C.expand_as(x)  # noqa: E731
    logits_fn = lambda x: x @ E.T  # noqa: E731
    t = torch.tensor([2, 1])
    out = training_losses(_diffusion(), const, logits_fn, emb, IDS, MASK, t, x0_std=0.0, anchor_weight=0.5)
    # row 0 targets: tokens 1, 2 -> (0,2), (-1,-1); row 1 target: token 1 -> (0,2)
    mse0 = ((0.5 - 0) ** 2 + (-0.5 - 2) ** 2 + (0.5 + 1) ** 2 + (-0.5 + 1) ** 2) / 4  # = 2.25
    mse1 = ((0.5 - 0) ** 2 + (-0.5 - 2) ** 2) / 2  # = 3.25
    tT0 = 0.3024 * (0 + 4 + 1 + 1) / 4
    tT1 = 0.3024 * (0 + 4) / 2
    r0 = (_ce([0, 2], 1) + _ce([-1, -1], 2)) / 2
    r1 = _ce([0, 2], 1)
    a0 = (_ce([0.5, -0.5], 1) + _ce([0.5, -0.5], 2)) / 2
    a1 = _ce([0.5, -0.5], 1)
    for got, want in [
        (out.mse, [mse0, mse1]),
        (out.tT, [tT0, tT1]),
        (out.rounding, [r0, r1]),
        (out.anchor, [a0, a1]),
        (out.loss, [mse0 + tT0 + r0 + 0.5 * a0, mse1 + tT1 + r1 + 0.5 * a1]),
    ]:
        assert got.tolist() == pytest.approx(want, rel=1e-12)


def test_t0_term_uses_clean_embeddings():
    """At t == 0 the target is Emb(w), not the perturbed x_0 ~ N(Emb(w), x0_std^2)."""
    emb = E[IDS]
    out = training_losses(
        _diffusion(),
        lambda x, t: C.expand_as(x),
        lambda x: x @ E.T,
        emb,
        IDS,
        MASK,
        torch.tensor([0, 0]),
        x0_std=0.3,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.mse.tolist() == pytest.approx([2.25, 3.25], rel=1e-12)
    assert (out.anchor == 0).all()


def test_exact_denoiser_on_point_mass_has_zero_mse():
    d = GaussianDiffusion.from_schedule("sqrt", 2000)
    g = torch.Generator().manual_seed(1)
    emb = E[IDS].float()
    exact = lambda x, t: emb.expand_as(x)  # noqa: E731  (E[x_0 | x_t] for a one-point data set)
    for t in ([0, 0], [1, 1999], [57, 0]):
        out = training_losses(
            d, exact, lambda x: x @ E.T.float(), emb, IDS, MASK, torch.tensor(t), generator=g, x0_std=0.0
        )
        assert (out.mse == 0).all()


def test_partial_noising_and_gradients():
    """The denoiser sees clean source positions; gradients reach the (learnt) embeddings."""
    d = GaussianDiffusion.from_schedule("sqrt", 2000)
    emb = E[IDS].float().clone().requires_grad_(True)
    seen = {}

    def x0_fn(x, t):
        seen["x"] = x
        return x

    g = torch.Generator().manual_seed(0)
    logits_fn = lambda x: x @ E.T.float()  # noqa: E731
    out = training_losses(d, x0_fn, logits_fn, emb, IDS, MASK, torch.tensor([500, 3]), generator=g)
    assert torch.equal(seen["x"][~MASK], emb.detach()[~MASK])
    out.loss.sum().backward()
    assert emb.grad[MASK].abs().sum() > 0 and (emb.grad[~MASK] == 0).all()
