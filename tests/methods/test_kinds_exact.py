"""The model kinds (the glue between network and math) with an exact network stand-in.

A module that returns the toy's exact quantities in the kind's own parameterisation (SUBS
logits for ``mdlm``; SEDD's sigma-offset log scores for ``sedd_absorb``) must make the kind's
bound tight and its samplers reproduce the enumerated distributions.
"""

import math

import pytest
import torch
from toy import Toy, histogram, random_categorical, tv, tv_tolerance

from dlmkit.diffusion.graphs import Absorbing
from dlmkit.methods.base import Specials
from dlmkit.methods.mdlm import MaskedDiffusion
from dlmkit.methods.sedd import SEDDAbsorb
from dlmkit.sampling.conditioning import Condition
from dlmkit.sampling.discrete import masked_output_distribution, sedd_output_distribution

TOY = Toy(random_categorical(3, 3, seed=11), 3, 3, "absorbing", mask_id=1)
SPECIALS = Specials(eos=0, pad=0, mask=1, sep=0)
OPTIONS = {"schedule": "loglinear", "eps": 1e-3}


class ExactDenoiser(torch.nn.Module):
    """Returns exact log p(x0 | x_t) as logits (MDLM's network is not told the noise level)."""

    def forward(self, x, cond=None, **_):
        assert cond is None
        return TOY.denoise_fn(x, None)


class ExactScores(torch.nn.Module):
    """Returns the raw output that SEDD's absorbing offset turns into the exact log scores."""

    def forward(self, x, cond=None, **_):
        sigma = cond.double()
        offset = torch.log(torch.expm1(sigma)) + math.log(TOY.vocab - 1)
        return TOY.score_fn(x, sigma) + offset[:, None, None]


KINDS = {
    "mdlm": (MaskedDiffusion(TOY.vocab, SPECIALS, OPTIONS), ExactDenoiser()),
    "sedd_absorb": (SEDDAbsorb(TOY.vocab, SPECIALS, OPTIONS), ExactScores()),
}


@pytest.mark.parametrize("kind", KINDS)
def test_bound_is_tight_for_the_exact_network(kind):
    method, net = KINDS[kind]
    x0 = TOY.support()
    nll, se = method.nll(net, x0, generator=torch.Generator().manual_seed(0), n_samples=1000)
    exact = TOY.nll(x0)
    assert torch.all((nll - exact).abs() <= 5 * se + 2e-3), (nll - exact, se)


@pytest.mark.parametrize("kind", KINDS)
def test_conditional_bound_given_clean_positions(kind):
    """clean_mask over position 0 bounds -log p(x^1, x^2 | x^0), tightly for the exact network."""
    method, net = KINDS[kind]
    x0 = TOY.support()
    clean = torch.zeros_like(x0, dtype=torch.bool)
    clean[:, 0] = True
    nll, se = method.nll(net, x0, generator=torch.Generator().manual_seed(1), n_samples=1000, clean_mask=clean)
    first = torch.stack([TOY.data[TOY.states[:, 0] == v].sum() for v in x0[:, 0].tolist()])
    exact = TOY.nll(x0) + first.log()
    assert torch.all((nll - exact).abs() <= 5 * se + 2e-3), (nll - exact, se)


N = 8000


@pytest.mark.parametrize("condition", [None, Condition.from_spans(3, prefix=[2]), Condition.from_spans(3, suffix=[3])])
def test_mdlm_samples_match_the_enumerated_sampler(condition):
    method, net = KINDS["mdlm"]
    for sampler in ("cached", "ancestral"):
        out = method.sample(net, N, 3, steps=6, generator=torch.Generator().manual_seed(3), condition=condition, sampler=sampler)
        exact = masked_output_distribution(TOY.denoise_fn, 1, TOY.vocab, method.schedule, 3, 6, condition=condition)
        assert tv(histogram(TOY, out.tokens), exact) < tv_tolerance(27, N)


@pytest.mark.parametrize("predictor", ["analytic", "euler"])
def test_sedd_samples_match_the_enumerated_sampler(predictor):
    method, net = KINDS["sedd_absorb"]
    condition = Condition.from_spans(3, spans=[(1, [0])])
    out = method.sample(net, N, 3, steps=5, generator=torch.Generator().manual_seed(4), condition=condition, sampler=predictor)
    exact = sedd_output_distribution(TOY.score_fn, Absorbing(TOY.vocab, 1), method.schedule, 3, 5, predictor=predictor, eps=1e-5, condition=condition)
    assert out.nfe == 6
    assert tv(histogram(TOY, out.tokens), exact) < tv_tolerance(27, N)


def test_cached_sampler_skips_calls_and_matches():
    method, net = KINDS["mdlm"]
    a = method.sample(net, 4, 3, steps=500, generator=torch.Generator().manual_seed(5), sampler="cached")
    b = method.sample(net, 4, 3, steps=500, generator=torch.Generator().manual_seed(5), sampler="ancestral")
    assert torch.equal(a.tokens, b.tokens)
    assert b.nfe == 500 and a.nfe <= 4 * 3 + 1
