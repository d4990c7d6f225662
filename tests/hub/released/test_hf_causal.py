"""Hugging Face causal LMs as dlmkit AR models: exact nll, KV-cache sampling, CLI eval ppl / sample / bench latency."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import torch
import torch.nn.functional as F


def _run(argv):
    from dlmkit.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(argv)
    assert rc == 0, argv
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def test_hf_gpt2_nll_is_exact_and_cache_sampling_matches(gpt2_hf):
    from transformers import AutoModelForCausalLM

    from dlmkit.hub.hf import HFCausalModel
    from dlmkit.sampling.autoregressive import generate
    from dlmkit.hub.load import load as load_model

    model, tok = load_model(gpt2_hf)
    assert isinstance(model, HFCausalModel) and model.kind == "ar" and model.seq_len == 64
    assert tok.eos_id == 50256 and tok.encode("Hello world") == [15496, 995]  # GPT-2's own ids
    ref = AutoModelForCausalLM.from_pretrained(str(gpt2_hf), local_files_only=True).eval()
    x = torch.tensor([tok.encode("It is a truth universally acknowledged, that a single man")])
    nll, se = model.method.nll(model.net, x, generator=torch.Generator())
    inp = torch.cat([torch.tensor([[50256]]), x[:, :-1]], 1)
    want = F.cross_entropy(ref(input_ids=inp).logits[0].double(), x[0], reduction="sum")
    torch.testing.assert_close(nll[0].double(), want, atol=1e-4, rtol=1e-5)
    assert se[0] == 0 and not model.method.nll_is_bound
    # KV cache (the HF model's own) and full recomputation give the same tokens
    prompt = torch.full((2, 1), 50256)
    a = generate(model.net, prompt, 12, generator=torch.Generator().manual_seed(3), use_cache=True)
    b = generate(model.net, prompt, 12, generator=torch.Generator().manual_seed(3), use_cache=False)
    assert torch.equal(a, b)
    out = model.method.sample(model.net, 2, 12, steps=0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.tokens, a[:, 1:])


def test_cli_eval_ppl_sample_and_latency_with_hf_gpt2(gpt2_hf, sedd_release, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    res = _run(["eval", "ppl", str(gpt2_hf), str(sedd_release), "--data", str(text), "--max-sequences", "2", "--n-samples", "1", "--json"])
    rows = {r["kind"]: r for r in res["ppl"]}
    assert rows["ar"]["bound"] is False and rows["ar"]["sequences"] == 2 and rows["ar"]["ppl"] > 1
    assert rows["sedd_absorb"]["bound"] is True and rows["sedd_absorb"]["tokens"] == 2 * 64
    s = _run(["sample", str(gpt2_hf), "--n", "2", "--length", "8", "--json"])
    assert len(s["texts"]) == 2
    lat = _run(["bench", "latency", str(sedd_release), "--ar", str(gpt2_hf), "--steps", "2", "--lengths", "16", "--batch", "1",
                "--repeats", "1", "--warmup", "0", "--no-progress", "--json"])
    kinds = [r["kind"] for r in lat["latency"]["rows"]]
    assert kinds == ["sedd_absorb", "ar"] and lat["latency"]["rows"][1]["kv_cache"] is True


def test_gguf_paths_go_through_the_judges_loader(gpt2_hf, tmp_path, monkeypatch):
    """A .gguf file or a folder holding one: de-quantised by the judges' loader (stubbed here with
    the tiny GPT-2, since converting a real GGUF takes ~40 s), tokenizer from transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import dlmkit.hub.hf as hf
    from dlmkit.hub.load import load as load_model

    calls = []

    def fake_load_gguf(path, device, cache=True):
        calls.append(path)
        return AutoModelForCausalLM.from_pretrained(str(gpt2_hf), local_files_only=True).eval(), AutoTokenizer.from_pretrained(str(gpt2_hf), local_files_only=True)

    monkeypatch.setattr(hf, "load_gguf", fake_load_gguf)
    folder = tmp_path / "smol"
    folder.mkdir()
    (folder / "model.Q4.gguf").write_bytes(b"GGUF")
    plain, plain_tok = load_model(gpt2_hf)
    x = torch.tensor([plain_tok.encode("a short test sentence")])
    want, _ = plain.method.nll(plain.net, x, generator=torch.Generator())
    for spec in (folder, folder / "model.Q4.gguf"):
        model, tok = load_model(spec)
        assert model.config["source"]["layout"] == "gguf" and calls[-1] == folder / "model.Q4.gguf"
        assert tok.eos_id == plain_tok.eos_id == 50256 and tok.encode("a short test sentence") == x[0].tolist()
        got, _ = model.method.nll(model.net, x, generator=torch.Generator())
        torch.testing.assert_close(got, want)
