import pytest
import torch

from dlmkit.networks.transformer import BackboneConfig, Transformer
from dlmkit.sampling.autoregressive import generate
from dlmkit.sampling.categorical import sample_categorical, top_k_top_p


def random_net(**kw) -> Transformer:
    cfg = BackboneConfig(vocab_size=37, n_layers=2, d_model=32, n_heads=4, d_cond=16, seq_len=24, **kw)
    torch.manual_seed(0)
    net = Transformer(cfg).eval()
    with torch.no_grad():  # leave the zero-initialised adaLN / head: make every path matter
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net


@pytest.mark.parametrize("options", [dict(temperature=0), dict(temperature=1.0), dict(top_k=5), dict(top_p=0.8)])
def test_kv_cache_generation_equals_recomputation(options):
    net = random_net(causal=True, time_conditioned=False)
    prompt = torch.randint(0, 37, (3, 5), generator=torch.Generator().manual_seed(1))
    a = generate(net, prompt, 15, generator=torch.Generator().manual_seed(7), use_cache=True, **options)
    b = generate(net, prompt, 15, generator=torch.Generator().manual_seed(7), use_cache=False, **options)
    assert a.shape == (3, 20)
    assert torch.equal(a, b)


def test_generation_stops_once_every_row_has_a_stop_token():
    net = random_net(causal=True, time_conditioned=False)
    prompt = torch.randint(0, 37, (3, 5), generator=torch.Generator().manual_seed(1))
    full = generate(net, prompt, 19, generator=torch.Generator().manual_seed(7))
    new = full[:, 5:]
    stop = tuple(set(new[:, 3].tolist()))  # every row draws one of these by its 4th token
    ends = [next(i for i, t in enumerate(r) if t in stop) for r in new.tolist()]
    short = generate(net, prompt, 19, generator=torch.Generator().manual_seed(7), stop_ids=stop)
    expect = max(ends) + 1
    assert expect <= 4 and short.shape[1] == 5 + expect
    assert torch.equal(short, full[:, : 5 + expect])


def test_causal_model_ignores_the_future_and_cache_logits_match():
    net = random_net(causal=True, time_conditioned=False)
    x = torch.randint(0, 37, (2, 12))
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % 37
    with torch.no_grad():
        full_x, full_y = net(x), net(y)
        assert torch.allclose(full_x[:, :8], full_y[:, :8], atol=1e-6)
        assert not torch.allclose(full_x[:, 8:], full_y[:, 8:])
        cache = net.new_cache(2)
        first = net(x[:, :7], cache=cache)
        rest = net(x[:, 7:], cache=cache)  # a chunk after a cached prefix uses the offset mask
    assert torch.allclose(torch.cat([first, rest], 1), full_x, atol=1e-5)


def test_bidirectional_model_uses_the_noise_level_and_the_whole_sequence():
    net = random_net()
    x = torch.randint(0, 37, (2, 10))
    with torch.no_grad():
        a = net(x, cond=torch.tensor([0.1, 0.1]))
        b = net(x, cond=torch.tensor([2.0, 2.0]))
        y = x.clone()
        y[:, -1] = (y[:, -1] + 1) % 37
        c = net(y, cond=torch.tensor([0.1, 0.1]))
    assert not torch.allclose(a, b)
    assert not torch.allclose(a[:, 0], c[:, 0])  # position 0 sees the last token
    with pytest.raises(ValueError, match="noise level"):
        net(x)


def test_vector_inputs_and_context_limit():
    net = random_net(in_dim=8, out_dim=8, embed_tokens=False)
    out = net(embeds=torch.randn(2, 6, 8), cond=torch.zeros(2))
    assert out.shape == (2, 6, 8)
    with pytest.raises(ValueError, match="longer than the model's context"):
        net(embeds=torch.randn(1, 25, 8), cond=torch.zeros(1))


def test_weight_tying():
    net = random_net(tie_weights=True)
    assert net.head.weight is net.embed.weight


def test_float64_categorical_matches_probabilities():
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64)
    n = 200_000
    draws = sample_categorical(probs.expand(n, 4), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / n
    # 5 standard deviations of a binomial proportion
    assert torch.all((freq - probs).abs() <= 5 * (probs * (1 - probs) / n).sqrt() + 1e-12)
    assert freq[3] == 0


def test_top_k_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]]))
    assert torch.isinf(top_k_top_p(logits, top_k=2)).tolist() == [[False, False, True, True]]
    # nucleus 0.7: 0.5 + 0.25 reaches it, the rest goes
    assert torch.isinf(top_k_top_p(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(top_k_top_p(logits, top_p=0.3)).tolist() == [[False, True, True, True]]
