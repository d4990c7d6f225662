"""The diffuseq kind: network parts, loss, sampling keeps the source bit-identical, nll refuses."""

import pytest
import torch

from dlmkit.errors import DlmError
from dlmkit.methods.base import Specials, get_method_class
from dlmkit.hub.model import DlmModel
from dlmkit.networks.transformer import BackboneConfig
from dlmkit.sampling.continuous import Seq2SeqSampler

SP = Specials(eos=2, pad=0, mask=3, sep=1)
V, L = 40, 16


def tiny_model(**cont) -> DlmModel:
    cfg = BackboneConfig(vocab_size=V, n_layers=1, d_model=32, n_heads=2, d_cond=32, seq_len=L)
    options = {"continuous": {"emb_dim": 8, "timesteps": 50, **cont}}
    return DlmModel.build("diffuseq", cfg, SP, options)


def rows(batch=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, V, (batch, L), generator=g)
    x[:, 5] = SP.sep
    x[:, 11] = SP.eos
    x[:, 12:] = SP.pad
    return x


def test_network_parts_and_shapes():
    m = tiny_model()
    net = m.net
    assert get_method_class("diffuseq").data_format == "seq2seq"
    assert net.word_emb.weight.shape == (V, 8)
    x = rows()
    e = net.embed(x)
    assert e.shape == (3, L, 8)
    assert net.x0(e, torch.tensor([0, 10, 49])).shape == (3, L, 8)
    assert torch.allclose(net.logits(e), e @ net.word_emb.weight.T)
    assert net.transformer.embed is None and net.transformer.time is not None


def test_loss_backward_and_lossaware_sampler():
    m = tiny_model(t_sampler="lossaware")
    g = torch.Generator().manual_seed(1)
    loss, extra = m.method.loss(m.net, rows(), g)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(extra) == {"mse", "tT", "rounding"}
    loss.backward()
    assert m.net.word_emb.weight.grad is not None and m.net.word_emb.weight.grad.abs().sum() > 0
    assert int(m.method.time_sampler.counts.sum()) == 3  # the loss-aware history was fed


def test_nll_is_refused():
    m = tiny_model()
    with pytest.raises(DlmError, match="no likelihood"):
        m.method.nll(m.net, rows(), generator=torch.Generator())


@pytest.mark.parametrize("opts", [dict(sampler="ddim"), dict(sampler="ddpm"), dict(sampler="ddim", clamp_step=None, decode="nearest", eta=1.0)])
def test_sampling_never_changes_the_source(opts):
    m = tiny_model()
    x = rows()
    mask = m.method.target_mask(x)
    g = torch.Generator().manual_seed(3)
    out = m.method.sample(m.net, 3, L, steps=7, generator=g, condition=x, **opts)
    assert torch.equal(out.tokens[~mask], x[~mask])  # source tokens bit-identical
    assert out.nfe == (50 if opts["sampler"] == "ddpm" else 7)
    sampler = m.method.make_sampler(m.net, 7, **opts)
    assert isinstance(sampler, Seq2SeqSampler)
    x_cond = m.net.embed(x)
    res = sampler.sample(x_cond, mask, generator=torch.Generator().manual_seed(4))
    assert torch.equal(res.embeddings[~mask], x_cond[~mask])  # source embeddings bit-identical
    assert not torch.equal(res.embeddings[mask], x_cond[mask])


def test_sampling_is_seeded_and_checks_options():
    m = tiny_model()
    x = rows()
    a = m.method.sample(m.net, 3, L, steps=5, generator=torch.Generator().manual_seed(0), condition=x)
    b = m.method.sample(m.net, 3, L, steps=5, generator=torch.Generator().manual_seed(0), condition=x)
    assert torch.equal(a.tokens, b.tokens)
    with pytest.raises(DlmError):
        m.method.sample(m.net, 3, L, steps=5, generator=torch.Generator(), condition=x, temperature=1.0)
    with pytest.raises(DlmError):
        m.method.sample(m.net, 3, L, steps=500, generator=torch.Generator(), condition=x)
    with pytest.raises(DlmError):
        m.method.sample(m.net, 3, L, steps=5, generator=torch.Generator())
    with pytest.raises(DlmError, match="unknown continuous"):
        DlmModel.build("diffuseq", BackboneConfig(vocab_size=V, seq_len=L), SP, {"continuous": {"bogus": 1}})
