"""The bd3lm kind on a real (random, float64) network: the vectorised training pass equals block-by-block
passes, the KV cache equals the uncached prefix, block size 1 is the network's own AR factorisation, and
the cached sampler returns the uncached sampler's samples."""

import pytest
import torch

from dlmkit.diffusion.block import block_causal_mask
from dlmkit.errors import DlmError
from dlmkit.hub.model import DlmModel
from dlmkit.methods.base import Specials
from dlmkit.networks.transformer import BackboneConfig
from dlmkit.sampling.conditioning import Condition

V, MASK, EOS, PAD = 12, 11, 0, 1


def model(block_size: int, seq_len: int = 16, seed: int = 0) -> DlmModel:
    torch.manual_seed(seed)
    m = DlmModel.build("bd3lm", BackboneConfig(vocab_size=V, n_layers=2, d_model=32, n_heads=2, d_cond=16, seq_len=seq_len),
                       Specials(eos=EOS, pad=PAD, mask=MASK, sep=2), {"block_size": block_size})
    for p in m.net.parameters():  # larger weights than the GPT init, so positions and masks matter visibly
        p.data.normal_(0.0, 0.3)
    return m.double().eval()


def test_vectorised_pass_equals_block_by_block_passes():
    """Block b's logits from the [x_t ; x0] pass equal those of the network run on (clean blocks < b, noised
    block b) alone with the block-causal mask; a wrong mask or position in either would show."""
    m, B = model(4), 4
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(2, MASK, (3, 16), generator=g)
    x_t = torch.where(torch.rand(3, 16, generator=g) < 0.5, MASK, x0)
    nll = m.method.block_nll(m.net)(x_t, x0)
    for start in range(0, 16, B):
        x = torch.cat([x0[:, :start], x_t[:, start : start + B]], 1)
        logits = m.net(x, attn_mask=block_causal_mask(x.shape[1], B))[:, start:]
        logits[..., MASK] = -torch.inf
        ref = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x0[:, start : start + B], reduction="none")
        ref = torch.where(x_t[:, start : start + B] == MASK, ref, 0.0)
        assert torch.allclose(nll[:, start : start + B], ref, atol=1e-10)
    assert (nll[x_t != MASK] == 0).all() and (nll[x_t == MASK] > 0).all()


def test_kv_cache_equals_the_uncached_prefix():
    m = model(4)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(2, MASK, (2, 16), generator=g)
    x[:, -4:] = torch.where(torch.rand(2, 4, generator=g) < 0.5, MASK, x[:, -4:])
    cached, uncached = m.method.denoiser(m.net, 2, True), m.method.denoiser(m.net, 2, False)
    for end in (4, 8, 16):  # the cache commits one block, then two at once
        a, b = cached(x[:, :end]), uncached(x[:, :end])
        assert torch.allclose(a.exp(), b.exp(), atol=1e-10), end


def test_block_size_one_is_the_networks_ar_factorisation():
    """B = 1, count estimator: sum_i -log p(x^i | x^<i) read off the network one position at a time, exactly."""
    m = model(1)
    x0 = torch.randint(2, MASK, (2, 16), generator=torch.Generator().manual_seed(2))
    nll, se = m.method.nll(m.net, x0, generator=torch.Generator().manual_seed(0), n_samples=2, estimator="count")
    ref = torch.zeros(2, dtype=torch.float64)
    for i in range(16):
        x = torch.cat([x0[:, :i], torch.full((2, 1), MASK)], 1)
        logits = m.net(x, attn_mask=block_causal_mask(i + 1, 1))[:, -1]
        logits[:, MASK] = -torch.inf
        ref += torch.nn.functional.cross_entropy(logits, x0[:, i], reduction="none")
    assert torch.allclose(nll, ref, atol=1e-9) and (se == 0).all()


@pytest.mark.parametrize("sampler", ["cached", "ancestral", "confidence"])
def test_cached_sampler_returns_the_uncached_samples(sampler):
    m = model(4)
    cond = Condition.from_spans(16, prefix=[5, 6, 7, 8, 9], spans=[(9, [3])])  # a prefix into block 1, infill in block 2
    for condition in (None, cond):
        outs = [m.method.sample(m.net, 3, 16, steps=6, generator=torch.Generator().manual_seed(3), condition=condition,
                                sampler=sampler, use_cache=c) for c in (True, False)]
        assert torch.equal(outs[0].tokens, outs[1].tokens) and outs[0].nfe == outs[1].nfe
        assert not (outs[0].tokens == MASK).any()
        if condition is not None:
            assert outs[0].tokens[:, :5].tolist() == [[5, 6, 7, 8, 9]] * 3 and (outs[0].tokens[:, 9] == 3).all()


def test_stop_at_eos_gives_any_length():
    """With stop_at_eos, a row ends at its first generated end-of-text (the rest padded) and sampling
    stops once every row has one: a network that always predicts eos stops after the first block."""
    m = model(4)
    with torch.no_grad():
        m.net.head.bias.zero_()
        m.net.head.bias[EOS] = 50.0
    out = m.method.sample(m.net, 2, 16, steps=4, generator=torch.Generator().manual_seed(0), stop_at_eos=True)
    assert out.tokens[:, 0].tolist() == [EOS, EOS] and (out.tokens[:, 1:] == PAD).all()
    assert out.nfe <= 4  # one block's steps only


def test_block_size_must_divide_the_context():
    with pytest.raises(DlmError, match="block_size=5"):
        model(5)


def test_lengths_that_are_not_a_multiple_of_the_block():
    """Scoring and sampling allow a short last block (the harness scores context + continuation of any length)."""
    m = model(4)
    x0 = torch.randint(2, MASK, (2, 10), generator=torch.Generator().manual_seed(4))
    nll, _ = m.method.nll(m.net, x0, generator=torch.Generator().manual_seed(0), n_samples=2, estimator="count",
                          clean_mask=torch.arange(10)[None].expand(2, -1) < 5)
    assert torch.isfinite(nll).all() and (nll > 0).all()
    outs = [m.method.sample(m.net, 2, 10, steps=3, generator=torch.Generator().manual_seed(5), use_cache=c) for c in (True, False)]
    assert torch.equal(outs[0].tokens, outs[1].tokens) and outs[0].tokens.shape == (2, 10)


def test_clip_variances_rank_the_always_masked_schedule_first_at_block_size_one():
    """B = 1 clipped to always-masked is the AR loss: no randomness left, so its variance is ~0, far below the full range's."""
    m = model(1)
    x0 = torch.randint(2, MASK, (4, 16), generator=torch.Generator().manual_seed(6))
    var = m.method.clip_variances(m.net, x0, torch.Generator().manual_seed(0), [(1e-3, 1.0), (0.999, 1.0)], draws=6)
    assert var[(0.999, 1.0)] < 1e-3 * var[(1e-3, 1.0)]
