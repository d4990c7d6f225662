"""The block sampler against exact laws on an enumerable toy (exact block denoisers): the sampler
reproduces its exact discretised law at few steps and the data law at many; block size 1 is exact AR."""

import pytest
import torch
from block_toy import block_denoiser
from toy import Toy, histogram, markov_chain, tv, tv_tolerance

from dlmkit.diffusion.schedules import LogLinear
from dlmkit.sampling.block import block_output_distribution, sample_blocks
from dlmkit.sampling.conditioning import Condition

TOY = Toy(markov_chain(3, 4, seed=3), 3, 4, "absorbing", mask_id=1)
SCHED = LogLinear(1e-3)
N = 12000


def draw(block_size, steps, cache=False, condition=None, kernel="ancestral", seed=0, n=N):
    out = sample_blocks(block_denoiser(TOY, block_size), 1, 4, SCHED, n, 4, block_size, steps,
                        generator=torch.Generator().manual_seed(seed), cache=cache, condition=condition, kernel=kernel)
    return out


@pytest.mark.parametrize("kernel", ["ancestral", "confidence"])
def test_sampler_law_equals_the_exact_discretised_law_at_few_steps(kernel):
    exact = block_output_distribution(block_denoiser(TOY, 2), 1, 4, SCHED, 4, 2, 1, kernel=kernel)
    assert abs(float(exact.sum()) - 1) < 1e-12
    data_gap = tv(exact, TOY.data)
    if kernel == "ancestral":
        assert data_gap > 0.01  # one step per block draws the block's two tokens independently: a real gap
    out = draw(2, 1, kernel=kernel)
    assert out.nfe == 2
    assert tv(histogram(TOY, out.tokens), exact) < tv_tolerance(81, N)


def test_many_steps_reach_the_data_law():
    """The discretisation gap shrinks with the steps (0.37, 0.10, 0.026, 0.0065 at 1, 4, 16, 64 per block)."""
    gaps = [tv(block_output_distribution(block_denoiser(TOY, 2), 1, 4, SCHED, 4, 2, s), TOY.data) for s in (1, 4, 16, 64)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 0.01
    out = draw(2, 64, cache=True)
    assert tv(histogram(TOY, out.tokens), TOY.data) < tv_tolerance(81, N) + gaps[-1]
    one = draw(2, 64, cache=True, n=1)  # the cached variant calls only when the block changed: <= 3 calls a block
    assert one.nfe <= 2 * 3


def test_block_size_one_is_exact_at_one_step():
    exact = block_output_distribution(block_denoiser(TOY, 1), 1, 4, SCHED, 4, 1, 1)
    assert torch.allclose(exact, TOY.data, atol=1e-12)


def test_prefix_and_infill_conditioning():
    """Held tokens: a prefix into block 0 and a token infilled in block 1; at many steps the law is
    the block-AR conditional: p(x^1 | x^0) p(x^2 x^3 | x^0 x^1, x^3 held) -- for block 1 exactly the data conditional."""
    cond = Condition((0, 3), (2, 0))
    exact = block_output_distribution(block_denoiser(TOY, 2), 1, 4, SCHED, 4, 2, 64, condition=cond)
    target = TOY.conditional([0, 3], [2, 0]).data
    # block 0 does not see position 3, so only the law of x^1 given x^0 = 2 differs from the conditional
    assert tv(exact, target) > 0.001
    chain = TOY.conditional([0], [2]).data
    x = TOY.states
    exact_block_ar = torch.zeros_like(target)
    for s in range(len(x)):
        if x[s, 0] != 2 or x[s, 3] != 0 or TOY.data[s] == 0:
            continue
        p1 = chain[(x[:, 1] == x[s, 1]) & (x[:, 0] == 2)].sum()
        rows = (x[:, 0] == 2) & (x[:, 1] == x[s, 1]) & (x[:, 3] == 0)
        exact_block_ar[s] = p1 * TOY.data[s] / TOY.data[rows].sum()
    assert tv(exact, exact_block_ar) < 0.01
    out = draw(2, 64, cache=True, condition=cond)
    assert (out.tokens[:, 0] == 2).all() and (out.tokens[:, 3] == 0).all()
    assert tv(histogram(TOY, out.tokens), exact) < tv_tolerance(81, N)


def test_stop_id_cuts_rows_and_stops():
    out = sample_blocks(block_denoiser(TOY, 2), 1, 4, SCHED, 500, 4, 2, 8, generator=torch.Generator().manual_seed(0),
                        stop_id=0, fill_id=3)
    for row in out.tokens.tolist():
        if 0 in row:
            k = row.index(0)
            assert all(t == 3 for t in row[k + 1 :])
        assert 1 not in row


def test_short_last_block():
    """B = 3 on L = 4: blocks of 3 and 1 tokens; the sampler follows its exact law."""
    exact = block_output_distribution(block_denoiser(TOY, 3), 1, 4, SCHED, 4, 3, 2)
    out = draw(3, 2)
    assert out.nfe == 4 and tv(histogram(TOY, out.tokens), exact) < tv_tolerance(81, N)
