"""Block diffusion maths: the attention masks position by position, and the block NELBO against exact NLLs."""

import pytest
import torch
from block_toy import block_nll_fn
from toy import Toy, exact_point, markov_chain

from dlmkit.diffusion.block import (
    block_causal_mask, block_count_nelbo, block_diffusion_mask, block_loss, block_point, block_times,
    check_block_condition,
)
from dlmkit.diffusion.likelihood import nelbo
from dlmkit.diffusion.schedules import LogLinear
from dlmkit.errors import DlmError

TOY = Toy(markov_chain(3, 4, seed=1), 3, 4, "absorbing", mask_id=1)


@pytest.mark.parametrize("L", [12, 10])
def test_training_mask_position_by_position(L):
    """[x_t ; x0]: noised i sees noised j iff same block, clean j iff block(j) < block(i); clean i sees
    clean j iff block(j) <= block(i) and never a noised position (L = 10: a short last block)."""
    B = 4
    mask = block_diffusion_mask(L, B)
    assert mask.shape == (2 * L, 2 * L) and mask.dtype == torch.bool
    for q in range(2 * L):
        for k in range(2 * L):
            bq, bk = (q % L) // B, (k % L) // B
            if q < L:
                want = bq == bk if k < L else bk < bq
            else:
                want = False if k < L else bk <= bq
            assert bool(mask[q, k]) == want, (q, k)
    causal = block_causal_mask(L, B)
    assert torch.equal(causal, mask[L:, L:])
    assert torch.equal(block_causal_mask(L, 1), torch.ones(L, L, dtype=torch.bool).tril())  # B = 1: causal
    assert block_diffusion_mask(L, L)[:L, :L].all() and not block_diffusion_mask(L, L)[:L, L:].any()  # B = L: MDLM
    with pytest.raises(DlmError, match="divide"):
        block_loss(None, LogLinear(), torch.zeros(1, 10, dtype=torch.long), torch.zeros(1, 3), 4, 1, torch.Generator())


def exact_terms(block_size):
    nll_fn = block_nll_fn(TOY, block_size)

    def terms(x0, xt, s):
        rec = nll_fn(xt, x0).sum(-1)
        return rec / torch.expm1(s), rec
    return terms


@pytest.mark.parametrize("block_size", [1, 2, 3, 4])
def test_block_bound_is_tight_with_exact_denoisers(block_size):
    """Integrated exactly over x_t (quadrature in the noise level), the bound is -log p(x0) for every sequence."""
    x0 = TOY.support()
    bound = nelbo(exact_point(TOY, exact_terms(block_size)), LogLinear(1e-3), x0, generator=torch.Generator(), n=12,
                  method="quadrature")
    assert torch.allclose(bound.nll, TOY.nll(x0), atol=1e-6, rtol=0)


def test_a_wrong_denoiser_gives_a_looser_bound():
    """The detector: an exact denoiser for the wrong data (another chain) is strictly above the NLL on average."""
    other = Toy(markov_chain(3, 4, seed=7), 3, 4, "absorbing", mask_id=1)
    nll_fn = block_nll_fn(other, 2)

    def terms(x0, xt, s):
        rec = nll_fn(xt, x0).sum(-1)
        return rec / torch.expm1(s), rec
    x0 = TOY.support()
    bound = nelbo(exact_point(TOY, terms), LogLinear(1e-3), x0, generator=torch.Generator(), n=12, method="quadrature")
    data = TOY.data[TOY.data > 0]
    assert float((data * (bound.nll - TOY.nll(x0))).sum()) > 0.01


def test_block_size_one_count_is_the_exact_ar_nll():
    x0 = TOY.support()
    est = block_count_nelbo(block_nll_fn(TOY, 1), 1, x0, 1, generator=torch.Generator().manual_seed(0), n=3)
    assert torch.allclose(est.nll, TOY.nll(x0), atol=1e-12) and (est.stderr < 1e-12).all() and est.nfe == 3


@pytest.mark.parametrize("estimator", ["count", "count-short-last-block", "mc", "quadrature"])
def test_sampled_estimates_average_to_the_nll(estimator):
    """The estimators with the exact denoiser, B = 2 (B = 3: a short last block): unbiased for -log p(x0) (z < 5)."""
    x0 = TOY.support()[::4]
    g = torch.Generator().manual_seed(0)
    nll_fn = block_nll_fn(TOY, 2)
    if estimator.startswith("count"):
        b = 2 if estimator == "count" else 3
        est = block_count_nelbo(block_nll_fn(TOY, b), 1, x0, b, generator=g, n=400)
    else:
        kw = dict(n=400) if estimator == "mc" else dict(n=8, repeats=60)
        est = nelbo(block_point(nll_fn, 1), LogLinear(1e-3), x0, generator=g, method=estimator, **kw)
    z = (est.nll - TOY.nll(x0)) / est.stderr
    assert z.abs().max() < 5.0, z


def test_training_loss_is_unbiased_for_the_bound():
    """block_loss at per-block times t ~ U[0, 1) averages to -log p(x0) with the exact denoiser."""
    x0 = TOY.support()[::4]
    g = torch.Generator().manual_seed(1)
    nll_fn, sched = block_nll_fn(TOY, 2), LogLinear(0.0)
    draws = torch.stack([block_loss(nll_fn, sched, x0, block_times(x0.shape[0], 2, g, lo=1e-9), 2, 1, g) for _ in range(600)])
    z = (draws.mean(0) - TOY.nll(x0)) / (draws.std(0) / 600 ** 0.5)
    assert z.abs().max() < 5.0, z


def test_block_times_clip_and_stratify():
    g = torch.Generator().manual_seed(0)
    t = block_times(4, 8, g, lo=0.3, hi=0.8)
    assert t.shape == (4, 8) and (t >= 0.3).all() and (t <= 0.8).all()
    u = ((t - 0.3) / 0.5).flatten().sort().values  # antithetic: one point in each of the 32 strata
    assert torch.equal((u * 32).floor().long(), torch.arange(32))
    with pytest.raises(DlmError):
        block_times(2, 2, g, lo=0.0)


def test_condition_must_come_first():
    check_block_condition(torch.tensor([[True, True, True, False, False, False]]), 2)  # prefix with infill in block 1
    check_block_condition(torch.tensor([[False, True, False, False, False, False]]), 2)  # infill in the first scored block
    with pytest.raises(DlmError, match="earlier blocks"):
        check_block_condition(torch.tensor([[True, False, True, False, False, False]]), 2)  # block 0 cannot see position 2
