"""generate() with a prefix per row (MAUVE's continuations) and DLM-One's validation on source rows:
the same seed draws bitwise the same tokens as the direct sampler calls these callers made before."""

from __future__ import annotations

import pytest
import torch

from dlmkit.data.tokenizer import train_bpe
from dlmkit.eval.tasks.mauve import continue_prompts
from dlmkit.generate import Prefixes, SourceRows, generate
from dlmkit.generate.prompt import PrefixRows
from dlmkit.hub.model import DlmModel
from dlmkit.methods.base import Specials
from dlmkit.networks.transformer import BackboneConfig
from dlmkit.sampling.autoregressive import generate as ar_generate
from dlmkit.sampling.conditioning import Condition

PROMPTS = [[5, 6, 7], [8, 9, 10], [11, 12, 13], [14, 15, 16], [17, 18, 19]]


@pytest.fixture(scope="module")
def tok():
    return train_bpe(["how do i cook rice", "why is the sky blue", "the cat sat on the mat"], 280)


def tiny(kind: str, tok, seq_len: int = 12) -> DlmModel:
    torch.manual_seed(0)
    sp = Specials(eos=tok.eos_id, pad=tok.pad_id, mask=tok.mask_id, sep=tok.sep_id)
    return DlmModel.build(kind, BackboneConfig(vocab_size=tok.vocab_size, n_layers=1, d_model=32, n_heads=2, seq_len=seq_len), sp).eval()


def old_continue_prompts(model, prompts, c, *, steps, seed, batch_size):
    """MAUVE's continuations as they were drawn before generate() took per-row prefixes."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        if model.method.causal:
            p = torch.tensor(chunk)
            bos = torch.full((p.shape[0], 1), model.method.specials.eos)
            out += ar_generate(model.net, torch.cat([bos, p], 1), c, generator=gen)[:, 1 + p.shape[1] :].tolist()
            continue
        P = len(chunk[0])
        cond = PrefixRows(tuple(range(P)), tuple(chunk[0]), rows=tuple(map(tuple, chunk)))
        toks = model.method.sample(model.net, len(chunk), P + c, steps=steps, generator=gen, condition=cond).tokens
        if toks[:, :P].tolist() != chunk:
            toks = torch.stack([model.method.sample(model.net, 1, P + c, steps=steps, generator=gen,
                                                    condition=Condition.from_spans(P + c, prefix=p)).tokens[0] for p in chunk])
        out += toks[:, P:].tolist()
    return out


@pytest.mark.parametrize("kind", ["ar", "mdlm", "sedd_absorb", "sedd_uniform"])
def test_mauve_continuations_are_bitwise_those_of_before(kind, tok):
    model = tiny(kind, tok)
    got = continue_prompts(model, PROMPTS, 6, steps=4, seed=3, batch_size=2)
    assert got == old_continue_prompts(model, PROMPTS, 6, steps=4, seed=3, batch_size=2)
    assert [len(c) for c in got] == [6] * 5


def test_a_sampler_that_ignores_row_prefixes_falls_back_to_one_row_a_call(tok, monkeypatch):
    monkeypatch.setattr(PrefixRows, "apply", Condition.apply)  # every row gets the first row's prefix
    model = tiny("mdlm", tok)
    out = generate(model, Prefixes(tuple(map(tuple, PROMPTS))), steps=4, batch=2, seed=3, length=9)
    assert out.tokens[:, :3].tolist() == PROMPTS
    assert continue_prompts(model, PROMPTS, 6, steps=4, seed=3, batch_size=2) == old_continue_prompts(model, PROMPTS, 6, steps=4, seed=3, batch_size=2)


@pytest.mark.parametrize("kind", ["ar", "mdlm"])
def test_prefixes_of_different_lengths_each_continue_their_own(kind, tok):
    rows = ((5, 6), (7, 8, 9), (10,), (11, 12))
    model = tiny(kind, tok)
    out = generate(model, Prefixes(rows), steps=4, batch=8, seed=0, length=8)
    assert out.tokens.shape == (4, 8)
    assert [out.tokens[i, : len(r)].tolist() for i, r in enumerate(rows)] == [list(r) for r in rows]
    if kind == "ar":  # rows of one prefix length drawn together, shortest first, in row order
        gen = torch.Generator().manual_seed(0)
        for idx in ([2], [0, 3], [1]):
            prompt = torch.tensor([[model.method.specials.eos, *rows[i]] for i in idx])
            want = ar_generate(model.net, prompt, 9 - prompt.shape[1], generator=gen)[:, 1:]
            assert torch.equal(out.tokens[idx], want)


def test_dlm_one_validation_rows_are_bitwise_those_of_before(tok):
    """DLM-One's validation: source rows through generate() in batches of 64 = the direct calls."""
    model = tiny("dlm_one", tok, seq_len=10)
    sp = model.method.specials
    rows = torch.full((70, 10), sp.pad)
    for i in range(70):
        src = [5 + i % 7, 6 + i % 5]
        rows[i, :3] = torch.tensor([*src, sp.sep])
    got = generate(model, SourceRows(rows), steps=1, batch=64, seed=12345, autocast=False).tokens
    gen = torch.Generator().manual_seed(12345)
    want = torch.cat([model.method.sample(model.net, len(b), 10, steps=1, generator=gen, condition=b).tokens for b in (rows[:64], rows[64:])])
    assert torch.equal(got, want)
