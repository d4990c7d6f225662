"""Speed paths give the values of the plain computations they replace (same maths, float tolerance)."""

import pytest
import torch
import torch.nn.functional as F

from dlmkit.diffusion.graphs import Absorbing, Uniform
from dlmkit.diffusion.masked import masked_nll_terms, subs_log_probs, subs_masked_nll
from dlmkit.methods.ar import AutoRegressive
from dlmkit.methods.base import Specials
from dlmkit.methods.mdlm import MaskedDiffusion
from dlmkit.sampling.discrete import sedd_step, get_predictor
from dlmkit.sampling.sedd_moves import move_scale, move_kernel

V, MASK = 11, 10
SPECIALS = Specials(eos=0, pad=1, mask=MASK, sep=2)


class FixedNet(torch.nn.Module):
    """Logits from a fixed random table of (position, token): any function of x works for these checks."""

    def __init__(self, length: int):
        super().__init__()
        self.table = torch.randn(length, V, V, generator=torch.Generator().manual_seed(0))

    def forward(self, x, cond=None):
        return self.table[torch.arange(x.shape[1]), x] * 3.0


def test_subs_masked_nll_equals_the_full_subs_computation():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, MASK, (5, 9), generator=g)
    x_t = torch.where(torch.rand(5, 9, generator=g) < 0.5, MASK, x0)
    x_t[0] = x0[0]  # a sequence with nothing masked
    logits = torch.randn(5, 9, V, generator=g) * 4
    full = masked_nll_terms(subs_log_probs(logits, x_t, MASK), x0, x_t, MASK)
    assert torch.allclose(subs_masked_nll(logits, x0, x_t, MASK), full, atol=1e-5, rtol=1e-6)
    assert float(full[0]) == 0.0


def test_mdlm_nll_is_unchanged_by_the_masked_row_path():
    method, net = MaskedDiffusion(V, SPECIALS), FixedNet(9)
    x0 = torch.randint(0, MASK, (4, 9), generator=torch.Generator().manual_seed(2))
    for estimator in ("mc", "quadrature", "count"):
        fast = method.nll(net, x0, generator=torch.Generator().manual_seed(3), n_samples=3, estimator=estimator)[0]
        method.masked_nll = lambda net_, m=method: (
            lambda x_t, sigma, x0_: masked_nll_terms(m.denoiser(net_)(x_t, sigma), x0_, x_t, MASK))
        plain = method.nll(net, x0, generator=torch.Generator().manual_seed(3), n_samples=3, estimator=estimator)[0]
        del method.masked_nll
        assert torch.allclose(fast, plain, atol=1e-5, rtol=1e-6), estimator


def test_ar_nll_on_flat_rows_equals_the_transposed_cross_entropy():
    method, net = AutoRegressive(V, SPECIALS), FixedNet(9)
    x0 = torch.randint(0, MASK, (4, 9), generator=torch.Generator().manual_seed(4))
    logits = net(method._shifted(x0))
    expected = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none").sum(1)
    nll, se = method.nll(net, x0, generator=torch.Generator())
    assert torch.allclose(nll, expected, atol=1e-5) and (se == 0).all()


@pytest.mark.parametrize("graph", [Absorbing(7, 6), Uniform(7)], ids=["absorbing", "uniform"])
@pytest.mark.parametrize("step", ["analytic", "euler", "denoise"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_row_moves_have_the_step_probabilities(graph, step, dtype):
    """sedd_moves' stay/move split gives the normalised step probabilities of the full [B, L, V] step."""
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 7, (3, 20), generator=g)
    log_score = (torch.randn(3, 20, 7, generator=g, dtype=torch.float64) * 2 - 1).scatter(-1, x.unsqueeze(-1), 0.0)
    predictor = "euler" if step == "euler" else "analytic"
    sigma, dsigma = 0.9, (None if step == "denoise" else 0.3)
    probs = sedd_step(lambda x_, s_: log_score, graph, get_predictor(predictor), x, sigma, dsigma)
    probs = probs / probs.sum(-1, keepdim=True)
    rows, q, stay = move_kernel(graph, x, log_score.to(dtype), predictor, sigma, dsigma)
    move = move_scale(graph, predictor, sigma, dsigma) * q.double().sum(-1)
    fast = F.one_hot(x, 7).double().reshape(-1, 7)
    fast[rows] = (q.double() / q.double().sum(-1, keepdim=True)) * (move / (move + stay)).unsqueeze(-1)
    fast[rows] += F.one_hot(x.reshape(-1)[rows], 7).double() * (stay / (move + stay)).unsqueeze(-1)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert torch.allclose(fast.view_as(probs), probs, atol=tol, rtol=0)
