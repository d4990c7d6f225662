"""Generative perplexity = the judge's own loss on the decoded samples; diversity on the model's ids."""

import math

import pytest
import torch

from dlmkit.errors import DlmError
from dlmkit.eval.metrics.diversity import diversity_stats
from dlmkit.eval.tasks.genppl import generative_perplexity


def judge_loss_direct(folder, texts):
    """Sum of NLLs and tokens with transformers' own loss, one text at a time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    total, count, per = 0.0, 0, []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"][: model.config.n_positions]
        if not ids:
            continue
        x = torch.tensor([[tok.eos_token_id, *ids]])[:, : model.config.n_positions + 1]
        with torch.no_grad():
            loss = model(input_ids=x[:, :-1], labels=None).logits.double().log_softmax(-1)[0].gather(-1, x[0, 1:, None]).sum().neg().item()
        total += loss
        count += len(ids)
        per.append(math.exp(loss / len(ids)))
    return total, count, per


def test_gen_ppl_equals_judge_loss_ar(ar_run, gpt2_judge):
    res = generative_perplexity(str(ar_run), str(gpt2_judge), n=6, length=20, batch_size=3, return_samples=True, progress=False)
    rows = res["gen"]
    assert [r["sampling"] for r in rows] == ["ancestral", "nucleus p=0.95"]
    for r in rows:
        total, count, per = judge_loss_direct(gpt2_judge, r["texts"])
        assert r["judge_tokens"] == count
        assert r["gen_ppl"] == pytest.approx(math.exp(total / count), rel=1e-5)
        assert r["gen_ppl_seq_mean"] == pytest.approx(sum(per) / len(per), rel=1e-5)
        assert r["gen_ppl_seq_mean"] >= r["gen_ppl"] - 1e-9
        div = diversity_stats(r["token_ids"])
        assert r["unigram_entropy"] == pytest.approx(div["unigram_entropy"])
        assert r["repetition_rate"] == pytest.approx(div["repetition_rate"])
        assert all(len(ids) == 20 for ids in r["token_ids"])
        assert r["judge"] == "gpt2-tiny" and r["length"] == 20 and "float64" in r["precision"] and r["steps"] is None


def test_gen_rows_per_steps_for_diffusion(diffusion_runs, gpt2_judge):
    if not diffusion_runs:
        pytest.skip("no diffusion kind registered yet")
    from dlmkit.eval.judges import load_judge

    judge = load_judge(str(gpt2_judge))
    for kind, run in diffusion_runs.items():
        rows = generative_perplexity(str(run), judge, n=4, steps=[2, 8], length=16, batch_size=4, progress=False)["gen"]
        assert [r["steps"] for r in rows] == [2, 8] and all(r["kind"] == kind for r in rows)
        assert all(r["gen_ppl"] > 1 and 0 < r["unique_unigram_fraction"] <= 1 for r in rows)


def test_gen_rejects_bad_input(ar_run, gpt2_judge):
    with pytest.raises(DlmError, match="longer than the model's context"):
        generative_perplexity(str(ar_run), str(gpt2_judge), n=2, length=999, progress=False)
    with pytest.raises(DlmError, match="at least 1"):
        generative_perplexity(str(ar_run), str(gpt2_judge), n=0, progress=False)


def test_temperature_samples_are_the_samplers_own(ar_run, diffusion_runs, gpt2_judge):
    """``temperature`` reaches the sampler: each row's ids are generate()'s with that option and the
    same seed, labelled and recorded; it changes the samples (of at least one of these barely trained
    models: a near-uniform one's draws hardly depend on it); a non-positive one is refused."""
    from dlmkit.eval.judges import load_judge
    from dlmkit.generate import Unconditional, generate
    from dlmkit.hub.load import load

    judge = load_judge(str(gpt2_judge))
    changed = []
    for run in [ar_run, *diffusion_runs.values()]:
        model, _ = load(str(run), torch.device("cpu"))
        rows = generative_perplexity(str(run), judge, n=4, steps=[3], length=12, batch_size=4, temperature=0.05,
                                     return_samples=True, progress=False)["gen"]
        plain = generative_perplexity(str(run), judge, n=4, steps=[3], length=12, batch_size=4, return_samples=True, progress=False)["gen"]
        for row, base in zip(rows, plain):
            assert row["temperature"] == 0.05 and row["sampling"].endswith("temperature 0.05")
            options = {"temperature": 0.05, **({"top_p": 0.95} if "nucleus" in row["sampling"] else {})}
            direct = generate(model, Unconditional(), 4, row["steps"] or 0, 4, 0, length=12, options=options, autocast=False)
            assert row["token_ids"] == direct.tokens.tolist()
            changed.append(row["token_ids"] != base["token_ids"])
    assert any(changed)
    with pytest.raises(DlmError, match="temperature"):
        generative_perplexity(str(ar_run), judge, n=2, temperature=0.0, progress=False)


def test_sampler_by_name(ar_run, diffusion_runs, gpt2_judge):
    """``sampler`` picks a diffusion kind's sampler: the rows' ids are generate()'s with it; an AR
    model or an unknown name is a one-line error."""
    from dlmkit.eval.judges import load_judge
    from dlmkit.generate import Unconditional, generate
    from dlmkit.hub.load import load

    judge = load_judge(str(gpt2_judge))
    run = diffusion_runs["mdlm"]
    model, _ = load(str(run), torch.device("cpu"))
    row = generative_perplexity(str(run), judge, n=4, steps=[3], length=12, batch_size=4, sampler="confidence",
                                return_samples=True, progress=False)["gen"][0]
    assert row["sampler"] == "confidence" and row["sampling"] == "sampler confidence"
    direct = generate(model, Unconditional(), 4, 3, 4, 0, length=12, options={"sampler": "confidence"}, autocast=False)
    assert row["token_ids"] == direct.tokens.tolist()
    with pytest.raises(DlmError, match="token by token"):
        generative_perplexity(str(ar_run), judge, n=2, sampler="confidence", progress=False)
    with pytest.raises(DlmError, match="sampler"):
        generative_perplexity(str(run), judge, n=2, steps=[2], sampler="nonesuch", progress=False)
