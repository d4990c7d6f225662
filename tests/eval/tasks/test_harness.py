"""The lm-eval adapter: certain answers rank first, windows cover every token once, tasks run offline."""

import math

import pytest
from readme_packages import require  # README-installed: fail, never skip
import torch

from dlmkit.eval.tasks.harness import TASKS_DIR, DlmkitScorer, _localise_tasks
from dlmkit.hub.load import load as load_model


def scorer(run, **kw):
    model, tok = load_model(run)
    return DlmkitScorer(model, tok, **kw)


def test_sky_is_blue_ranked_first_and_greedy(sky_ar):
    sc = scorer(sky_ar)
    (ll_blue, greedy_blue), (ll_green, greedy_green) = sc.loglikelihood([("the colour of the sky is", " blue"), ("the colour of the sky is", " green")])
    assert ll_blue > ll_green + 2.0
    assert ll_blue > math.log(0.5)  # the model is close to certain
    assert greedy_blue and not greedy_green


def test_sky_is_blue_for_masked_diffusion(sky_mdlm):
    sc = scorer(sky_mdlm, n_samples=8)
    # the greedy flags (one-step denoising argmax) are not asserted for so small a model
    (ll_blue, _), (ll_green, _) = sc.loglikelihood([("the colour of the sky is", " blue"), ("the colour of the sky is", " green")])
    assert ll_blue > ll_green + 2.0  # a lower bound on log p, and still far apart


def test_sky_task_through_lm_eval(sky_ar, tmp_path):
    require("lm_eval")
    from dlmkit.eval.tasks.harness import run_harness

    (tmp_path / "data").mkdir()
    rows = [{"question": "the colour of the sky is", "choices": [" blue", " green"] if i % 2 else [" green", " blue"], "label": 1 - i % 2} for i in range(4)]
    import json

    (tmp_path / "data" / "sky.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "sky.yaml").write_text(
        "task: sky_choice\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/sky.jsonl\n"
        "output_type: multiple_choice\ntest_split: test\ndoc_to_text: '{{question}}'\ndoc_to_target: label\n"
        "doc_to_choice: '{{choices}}'\ntarget_delimiter: ''\nmetric_list:\n  - metric: acc\n"
    )
    res = run_harness(str(sky_ar), ["sky_choice", "dlm_choice"], include_path=[str(tmp_path)], limit=4, progress=False)["harness"]
    assert res["results"]["sky_choice"]["acc"] == 1.0
    assert "acc" in res["results"]["dlm_choice"] and res["bound"] is False and res["requests"] == 16


def test_diffusion_loglikelihood_is_seeded_bound(diffusion_runs):
    if not diffusion_runs:
        pytest.skip("no diffusion kind registered yet")
    for kind, run in diffusion_runs.items():
        sc = scorer(run, n_samples=4)
        pairs = [("def f(x):", " return x"), ("def f(x):", " return x")]
        out = sc.loglikelihood(pairs)
        assert out[0][0] == out[1][0] and out[0][0] < 0  # common random numbers: same request, same value
        assert isinstance(out[0][1], bool)
        # the bound conditions on the context: scoring the continuation alone differs
        model, tok = load_model(run)
        ctx, cont = sc.split(*pairs[0])
        assert sc.score(ctx, cont) == pytest.approx(out[0][0])
        text = sc.generate("def f(x):", until=["\n"], max_gen_toks=6)
        assert "\n" not in text


def test_diffusion_loglikelihood_default_is_within_005_nats_per_token_of_1024_samples(diffusion_runs):
    """8 dlm_cloze items, tiny MDLM: independent draws per request and the exact noise integral make the
    default n_samples agree with 1024 samples (one shared draw for all requests gave 3.5 vs 2021 vs 142,442)."""
    import json

    if "mdlm" not in diffusion_runs:
        pytest.skip("mdlm is not registered")
    texts = [json.loads(line)["text"] for line in (TASKS_DIR / "dlm_cloze.jsonl").read_text().splitlines()[:8]]
    pairs = [(" ".join(t.split(" ")[:-1]), " " + t.split(" ")[-1]) for t in texts]
    per_token = {}
    for n in (8, 1024):
        sc = scorer(diffusion_runs["mdlm"], n_samples=n)
        lls = [ll for ll, _ in sc.loglikelihood(pairs)]
        per_token[n] = -sum(lls) / sum(len(sc.split(c, d)[1]) for c, d in pairs)
        assert len(sc.ll_stderr) == 8 and all(0 <= v < 1 for v in sc.ll_stderr)
    assert abs(per_token[8] - per_token[1024]) < 0.05, per_token


def test_rolling_windows_cover_each_token_once(ar_run):
    for ctx in (0, 5, 16):
        sc = scorer(ar_run, rolling_context=ctx)
        for n in (1, 31, 32, 33, 100):
            covered = []
            for a, b, e in sc.rolling_windows(n):
                assert e - a <= sc.L and a <= b < e
                covered += list(range(b, e))
            assert covered == list(range(n))


def test_rolling_equals_block_nll_for_ar(ar_run):
    sc = scorer(ar_run)
    text = "def f(x): return x * 2 if x else None  # a comment that runs past one window of tokens"
    ids = sc.tokenizer.encode(text)
    assert len(ids) > sc.L
    expected = 0.0
    for s in range(0, len(ids), sc.L):
        block = torch.tensor([ids[s : s + sc.L]])
        if s + sc.L >= len(ids):  # the last window gets the full context
            a = max(0, len(ids) - sc.L)
            block = torch.tensor([ids[a:]])
            clean = torch.arange(block.shape[1])[None] < s - a
            nll, _ = sc.method.nll(sc.net, block, generator=torch.Generator(), clean_mask=clean)
        else:
            nll, _ = sc.method.nll(sc.net, block, generator=torch.Generator())
        expected += nll.item()
    assert sc.loglikelihood_rolling([text])[0] == pytest.approx(-expected, rel=1e-5)


def test_generate_until_cuts_at_stop(ar_run):
    sc = scorer(ar_run)
    full = sc.generate("def", until=[], max_gen_toks=10)
    assert full
    stop = full[len(full) // 2 : len(full) // 2 + 1]
    if stop:
        assert sc.generate("def", until=[stop], max_gen_toks=10) == full[: full.index(stop)]


def test_shipped_tasks_load_from_any_cwd(tmp_path, monkeypatch):
    """The shipped tasks read their data through dlmkit (relative to the package, not the cwd);
    a user's task with relative data_files is made absolute by _localise_tasks."""
    import yaml

    from dlmkit.eval.tasks.harness import shipped_dataset

    monkeypatch.chdir(tmp_path)
    for name in ("dlm_cloze", "dlm_choice"):
        text = (TASKS_DIR / f"{name}.yaml").read_text()
        assert "custom_dataset: !function dlmkit.eval.tasks.harness.shipped_dataset" in text
        assert len(shipped_dataset(f"{name}.jsonl", version=1.0)["test"]) == 50
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "t.yaml").write_text("task: t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: d.jsonl\n")
    _localise_tasks([tmp_path / "mine"], tmp_path / "out")
    cfg = yaml.safe_load((tmp_path / "out" / "0" / "t.yaml").read_text())
    assert cfg["dataset_kwargs"]["data_files"]["test"] == str((tmp_path / "mine" / "d.jsonl").resolve())


def test_one_step_argmax_follows_the_declared_denoiser():
    """``is_greedy``'s diffusion argmax: the kinds that declare a denoiser denoise their own t = 1 state
    (mask, or the uniform graph's prior drawn from the generator) at sigma_bar(1); the others give None.
    Decided by the declaration alone: a kind with a denoiser but no ``schedule`` or ``graph`` works too."""
    from dlmkit.diffusion.graphs import Uniform
    from dlmkit.eval.tasks.harness import diffusion_one_step_argmax
    from dlmkit.hub.model import DlmModel
    from dlmkit.methods.base import Method, Specials
    from dlmkit.networks.transformer import BackboneConfig

    V, L, n_ctx = 12, 8, 3
    specials = Specials(eos=0, pad=1, mask=11, sep=2)
    x = torch.randint(2, 11, (2, L), generator=torch.Generator().manual_seed(0))
    clean = torch.arange(L)[None] < n_ctx
    for kind in ("mdlm", "sedd_absorb", "sedd_uniform", "bd3lm", "ar"):
        torch.manual_seed(1)
        m = DlmModel.build(kind, BackboneConfig(vocab_size=V, n_layers=1, d_model=16, n_heads=2, d_cond=8, seq_len=L),
                           specials, {"block_size": 4}).eval()
        got = diffusion_one_step_argmax(m.method, m.net, x, n_ctx, torch.Generator().manual_seed(2))
        if not m.method.has_denoiser:
            assert got is None, kind
            continue
        x_t = x.clone()
        x_t[:, n_ctx:] = (Uniform(V).sample_prior(2, L - n_ctx, torch.Generator().manual_seed(2)) if kind == "sedd_uniform"
                          else specials.mask)
        sigma = m.method.schedule.total(torch.ones(2, dtype=torch.float64))
        want = m.method.x0_log_probs(m.net, clean)(x_t, sigma).argmax(-1)
        assert torch.equal(got, want), kind

    class Oracle(Method):
        """A denoiser kind with neither ``schedule`` nor ``graph``: p(x0 | x_t) puts all mass on token 5."""
        kind, has_denoiser = "oracle", True

        def loss(self, net, x0, generator):
            raise NotImplementedError

        def sample(self, net, batch, length, *, steps, generator, condition=None, **options):
            raise NotImplementedError

        def fully_noised(self, x0, start, generator):
            return x0, torch.zeros(x0.shape[0], dtype=torch.float64)

        def x0_log_probs(self, net, clean_mask=None):
            return lambda x_t, sigma: torch.nn.functional.one_hot(torch.full_like(x_t, 5), V).double().log()

    got = diffusion_one_step_argmax(Oracle(V, specials), None, x, n_ctx, torch.Generator())
    assert got is not None and (got == 5).all()
