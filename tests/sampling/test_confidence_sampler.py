"""The confidence-ordered masked sampler against exact answers on the enumerable toys.

With the exact denoiser and one token unmasked per step it is an any-order autoregressive sampler
whose order depends only on the tokens already drawn, so its output law is the data (or the exact
conditional) whatever the order; with one step it is the product of the all-mask marginals.
"""

import pytest
import torch
from toy import Toy, histogram, markov_chain, random_categorical, tv, tv_tolerance

from dlmkit.diffusion.schedules import LogLinear
from dlmkit.methods.base import Specials
from dlmkit.methods.mdlm import MaskedDiffusion
from dlmkit.sampling.conditioning import Condition, exact_conditional
from dlmkit.sampling.discrete import masked_output_distribution, sample_masked
from dlmkit.sampling.masked_kernels import MASKED_KERNELS, MaskedStep, get_masked_kernel, masked_plan

ABS = Toy(random_categorical(3, 3, seed=0), 3, 3, "absorbing", mask_id=1)
LONG = Toy(markov_chain(2, 4, seed=3), 2, 4, "absorbing", mask_id=2)
N = 6000


def test_registered():
    assert MASKED_KERNELS["confidence"].name == "confidence" and "ancestral" in MASKED_KERNELS


@pytest.mark.parametrize("condition", [None, Condition.from_spans(3, prefix=[2]), Condition.from_spans(3, suffix=[3])])
def test_one_token_per_step_with_the_exact_denoiser_is_exact(condition):
    """3 positions, 3 steps on LogLinear(0): one unmask per step, drawn from the exact conditional."""
    exact = ABS.data if condition is None else exact_conditional(ABS.data, ABS.states, condition)
    law = masked_output_distribution(ABS.denoise_fn, 1, 4, LogLinear(0.0), 3, 3, condition=condition, kernel="confidence")
    assert torch.allclose(law, exact, atol=1e-12)
    out = sample_masked(ABS.denoise_fn, 1, 4, LogLinear(0.0), N, 3, 3, generator=torch.Generator().manual_seed(0),
                        condition=condition, kernel="confidence")
    assert not (out.tokens == 1).any()  # valid: no mask left
    if condition is not None:  # conditioning respected
        assert (out.tokens[:, list(condition.positions)] == torch.tensor(condition.token_ids)).all()
    assert tv(histogram(ABS, out.tokens), exact) < tv_tolerance(27, N)


def test_one_step_is_the_product_of_the_all_mask_marginals():
    law = masked_output_distribution(ABS.denoise_fn, 1, 4, LogLinear(1e-3), 3, 1, kernel="confidence")
    marg = ABS.denoise_fn(torch.ones(1, 3, dtype=torch.long), None)[0].exp()  # [L, V] p(x0^i | all masked)
    product = marg[0][ABS.states[:, 0]] * marg[1][ABS.states[:, 1]] * marg[2][ABS.states[:, 2]]
    assert torch.allclose(law, product, atol=1e-12)


@pytest.mark.parametrize("steps", [2, 3, 5])
def test_samples_match_the_enumerated_law(steps):
    """Several tokens per step (4 positions): the drawn sequences follow the kernel's exact law."""
    law = masked_output_distribution(LONG.denoise_fn, 2, 3, LogLinear(1e-3), 4, steps, kernel="confidence", temperature=0.8)
    assert abs(float(law.sum()) - 1.0) < 1e-12 and float(law[LONG.data == 0].sum()) < 1e-12
    out = sample_masked(LONG.denoise_fn, 2, 3, LogLinear(1e-3), N, 4, steps, generator=torch.Generator().manual_seed(steps),
                        kernel="confidence", temperature=0.8)
    assert tv(histogram(LONG, out.tokens), law) < tv_tolerance(16, N)


def test_each_step_unmasks_the_most_confident_positions():
    """At every step the unmasked positions are the n most confident masked ones (max_y p(y | x_t)),
    n = round(m (alpha_s - alpha_t) / (1 - alpha_t)); the others stay masked."""
    kernel = get_masked_kernel("confidence", 2)
    g = torch.Generator().manual_seed(1)
    x = torch.full((64, 4), 2)
    counts = []
    for step in masked_plan(LogLinear(1e-3), 5):
        log_p = LONG.denoise_fn(x, None)
        new = kernel.draw(log_p, x, step, g)
        masked = x == 2
        conf = log_p.exp().max(-1).values
        m = masked.sum(-1)
        n = torch.floor(m * (step.alpha_s - step.alpha_t) / (1 - step.alpha_t) + 0.5).long()
        unmasked = masked & (new != 2)
        assert (unmasked.sum(-1) == n).all() and ((new == x) | masked).all()
        for b in range(x.shape[0]):
            picked, left = conf[b][unmasked[b]], conf[b][masked[b] & ~unmasked[b]]
            if len(picked) and len(left):
                assert picked.min() >= left.max()
        counts.append(int(n[0]))
        x = new
    assert not (x == 2).any() and sum(counts) == 4 and max(counts) < 4  # spread over steps, all unmasked


def test_mdlm_takes_it_by_name():
    specials = Specials(eos=0, pad=0, mask=1, sep=0)
    method = MaskedDiffusion(4, specials, {"schedule": "loglinear", "eps": 0.0})

    class Exact(torch.nn.Module):
        def forward(self, x, cond=None, **_):
            return ABS.denoise_fn(x, None)

    out = method.sample(Exact(), N, 3, steps=3, generator=torch.Generator().manual_seed(2), sampler="confidence")
    assert out.nfe == 3 and tv(histogram(ABS, out.tokens), ABS.data) < tv_tolerance(27, N)
    with pytest.raises(Exception, match="unknown sampler"):
        method.sample(Exact(), 2, 3, steps=3, generator=torch.Generator(), sampler="nope")
    assert MaskedStep(0.0, 0.0, 1.0).alpha_s == 1.0
