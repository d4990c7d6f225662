"""generate(): one loop for every kind and prompt type, drawing exactly what the kinds' samplers draw."""

from __future__ import annotations

import pytest
import torch

from dlmkit.data.tokenizer import train_bpe
from dlmkit.errors import DlmError
from dlmkit.eval.tasks.mauve import continue_prompts
from dlmkit.generate import Prefixes, SampleOutput, SourceRows, Spans, Unconditional, generate, target_ids
from dlmkit.generate.prompt import PrefixRows
from dlmkit.hub.model import DlmModel
from dlmkit.methods.base import Specials
from dlmkit.networks.transformer import BackboneConfig
from dlmkit.sampling.autoregressive import generate as ar_generate
from dlmkit.sampling.conditioning import Condition


@pytest.fixture(scope="module")
def tok():
    return train_bpe(["how do i cook rice", "why is the sky blue", "the cat sat on the mat"], 280)


def tiny(kind: str, tok, seq_len: int = 12) -> DlmModel:
    torch.manual_seed(0)
    sp = Specials(eos=tok.eos_id, pad=tok.pad_id, mask=tok.mask_id, sep=tok.sep_id)
    return DlmModel.build(kind, BackboneConfig(vocab_size=tok.vocab_size, n_layers=1, d_model=32, n_heads=2, seq_len=seq_len), sp).eval()


@pytest.mark.parametrize("kind", ["mdlm", "sedd_absorb", "ar"])
def test_batches_draw_from_one_seeded_generator(kind, tok):
    """n=5 in batches of 2 equals three direct sampler calls on one generator seeded with ``seed``."""
    model = tiny(kind, tok)
    got = generate(model, Unconditional(), 5, 4, 2, 7)
    gen = torch.Generator().manual_seed(7)
    want = [model.method.sample(model.net, b, model.seq_len, steps=4, generator=gen) for b in (2, 2, 1)]
    assert isinstance(got, SampleOutput) and got.tokens.shape == (5, model.seq_len)
    assert torch.equal(got.tokens, torch.cat([w.tokens for w in want]))
    assert got.nfe == max(w.nfe for w in want) and got.seconds > 0


def test_spans_are_held_and_the_ar_kind_takes_a_prefix(tok):
    cond = Condition.from_spans(10, prefix=[5, 6, 7])
    for kind in ("mdlm", "ar"):
        out = generate(tiny(kind, tok), Spans(cond), 3, 4, 3, 0, length=10)
        assert out.tokens[:, :3].tolist() == [[5, 6, 7]] * 3
    infill = Condition.from_spans(10, spans=[(4, [9, 9])])
    out = generate(tiny("mdlm", tok), Spans(infill), 2, 4, 2, 0, length=10)
    assert out.tokens[:, 4:6].tolist() == [[9, 9]] * 2
    with pytest.raises(DlmError, match="prefix"):
        generate(tiny("ar", tok), Spans(infill), 1, 4, 1, 0, length=10)


def test_spans_from_text(tok):
    assert isinstance(Spans.from_text(tok, 10), Unconditional)
    p = Spans.from_text(tok, 10, prefix="why", suffix="blue")
    ids = tok.encode("why") + [None] * (10 - len(tok.encode("why")) - len(tok.encode("blue"))) + tok.encode("blue")
    assert dict(zip(p.condition.positions, p.condition.token_ids)) == {i: t for i, t in enumerate(ids) if t is not None}
    with pytest.raises(DlmError, match="runs past"):
        Spans.from_text(tok, 6, infill=[(3, "why why")])  # 5 tokens from position 3


def test_ar_source_rows_generate_after_eos_src_sep(tok):
    """AR on source rows: prompt ``eos src sep``, rows of equal source length batched, greedy draws
    equal to the plain AR generator's, the target read up to ``eos``."""
    model = tiny("ar", tok, seq_len=16)
    sp = model.method.specials
    srcs = [tok.encode("why"), tok.encode("how do i cook rice"), tok.encode("why")]
    rows = torch.full((3, 16), sp.pad)
    for i, s in enumerate(srcs):
        rows[i, : len(s) + 1] = torch.tensor([*s, sp.sep])
    out = generate(model, SourceRows(rows), steps=0, batch=8, seed=0, options={"temperature": 0.0})
    for i, s in enumerate(srcs):
        prompt = torch.tensor([[sp.eos, *s, sp.sep]])
        full = ar_generate(model.net, prompt, 16 - prompt.shape[1], temperature=0.0, stop_ids=(sp.eos, sp.sep))[0, prompt.shape[1]:].tolist()
        want = []
        for t in full:
            if t in (sp.eos, sp.sep):
                break
            want.append(t)
        assert target_ids(model, out.tokens[i].tolist()) == [t for t in want if t != sp.pad]
        assert out.tokens[i, : len(s) + 1].tolist() == [*s, sp.sep]


def test_source_rows_need_a_pair_model_and_n_is_checked(tok):
    rows = torch.zeros((1, 12), dtype=torch.long)
    with pytest.raises(DlmError, match="does not map sources to targets"):
        generate(tiny("mdlm", tok), SourceRows(rows))
    with pytest.raises(DlmError, match="--n must be at least 1"):
        generate(tiny("mdlm", tok), Unconditional(), 0)


def test_importing_generate_loads_no_engine_eval_hub_or_transformers():
    import subprocess
    import sys

    code = "import sys, dlmkit.generate; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    mods = out.stdout.split()
    bad = [m for m in mods if m.startswith(("dlmkit.engine", "dlmkit.eval", "dlmkit.hub", "dlmkit.recipes", "transformers"))]
    assert "dlmkit.generate.run" in mods and not bad, bad


# ---- a prefix per row (MAUVE's continuations) and DLM-One's validation rows: the same seed draws
# bitwise the same tokens as the direct sampler calls these callers made before

PROMPTS = [[5, 6, 7], [8, 9, 10], [11, 12, 13], [14, 15, 16], [17, 18, 19]]


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
