"""What each kind declares it can do, and that the declarations are what the kinds do."""

import math

import pytest
import torch
from toy import Toy, random_categorical

from dlmkit.errors import DlmError
from dlmkit.methods.base import PREFIX, SOURCE_ROWS, SPANS, UNCONDITIONAL, METHODS, Specials, get_method_class

TOY = Toy(random_categorical(3, 3, seed=11), 3, 3, "absorbing", mask_id=1)
SPECIALS = Specials(eos=0, pad=0, mask=1, sep=0)

DECLARED = {  # kind: (likelihood, denoiser, trainable, prompts)
    "ar": (True, False, True, {UNCONDITIONAL, PREFIX}),
    "mdlm": (True, True, True, {UNCONDITIONAL, PREFIX, SPANS}),
    "mdlm_sigma": (True, True, True, {UNCONDITIONAL, PREFIX, SPANS}),
    "sedd_absorb": (True, True, True, {UNCONDITIONAL, PREFIX, SPANS}),
    "sedd_uniform": (True, True, True, {UNCONDITIONAL, PREFIX, SPANS}),
    "diffuseq": (False, False, True, {SOURCE_ROWS}),
    "dlm_one": (False, False, False, {SOURCE_ROWS}),
    "bd3lm": (True, False, True, {UNCONDITIONAL, PREFIX, SPANS}),
}


@pytest.mark.parametrize("kind", sorted(DECLARED))
def test_declarations(kind):
    cls = get_method_class(kind)
    assert (cls.has_likelihood, cls.has_denoiser, cls.trainable, set(cls.prompts)) == DECLARED[kind]
    assert cls.nll_is_bound <= cls.has_likelihood


def test_every_kind_is_declared():
    get_method_class("ar")
    assert set(METHODS) == set(DECLARED)


@pytest.mark.parametrize("kind,capability,message", [
    ("diffuseq", "likelihood", "diffuseq has no likelihood"), ("dlm_one", "likelihood", "no likelihood"),
    ("dlm_one", "training", "trained by distillation"), ("ar", "denoiser", "ar has no denoiser"),
    ("bd3lm", "denoiser", "left to right"),
])
def test_missing_capability_is_the_kinds_error(kind, capability, message):
    method = get_method_class(kind)(8, SPECIALS, {})
    with pytest.raises(DlmError, match=message):
        method.require(capability)
    if capability == "denoiser":
        with pytest.raises(DlmError, match=message):
            method.x0_log_probs(torch.nn.Identity())
        with pytest.raises(DlmError, match=message):
            method.fully_noised(torch.zeros(1, 4, dtype=torch.long), 2, torch.Generator())


class ExactDenoiser(torch.nn.Module):
    def forward(self, x, cond=None, **_):
        return TOY.denoise_fn(x, None)


class ExactScores(torch.nn.Module):
    """Raw output that SEDD's absorbing offset turns into the toy's exact log scores."""

    def forward(self, x, cond=None, **_):
        sigma = cond.double()
        return TOY.score_fn(x, sigma) + (torch.log(torch.expm1(sigma)) + math.log(TOY.vocab - 1))[:, None, None]


def test_the_declared_denoisers_give_the_exact_posterior():
    """mdlm's SUBS denoiser and SEDD's Tweedie denoiser with exact networks: log p(x0^i | x_t) of the toy."""
    x_t = TOY.states[(TOY.states == 1).any(-1)]  # states with a masked position
    sigma = torch.full((x_t.shape[0],), 0.8, dtype=torch.float64)
    exact = TOY.posterior(0.8)[TOY.index(x_t)]
    for kind, net in [("mdlm", ExactDenoiser()), ("sedd_absorb", ExactScores())]:
        method = get_method_class(kind)(TOY.vocab, SPECIALS, {"schedule": "loglinear", "eps": 1e-3})
        got = method.x0_log_probs(net)(x_t, sigma).double().exp()
        assert torch.allclose(got, exact, atol=1e-5), kind
