"""generate(): one loop for every kind and prompt type, drawing exactly what the kinds' samplers draw."""

from __future__ import annotations

import pytest
import torch

from dlmkit.data.tokenizer import train_bpe
from dlmkit.errors import DlmError
from dlmkit.generate import SampleOutput, SourceRows, Spans, Unconditional, generate, target_ids
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
