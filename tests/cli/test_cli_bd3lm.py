"""Every `dlm` command takes the bd3lm kind: train, sample, eval ppl/gen/mauve/harness, bench latency."""

import json

import torch

from dlmkit.cli import main


def run_json(capsys, *argv):
    code = main([*argv, "--json"] + ([] if argv[0] == "sample" else ["--no-progress"]))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_bd3lm_through_every_command(text_corpus, gpt2_judge, webtext, ar_run, tmp_path, capsys):
    from fixtures_eval_runs import TINY

    run = tmp_path / "bd3lm"
    res = run_json(capsys, "train", "tiny", *TINY, "model.kind=bd3lm", "diffusion.block_size=8", "diffusion.clip_min=0.3",
                   "diffusion.clip_max=0.8", "train.steps=4", f"data.train={text_corpus}", f"out_dir={run}")
    assert res["steps"] == 4
    model = str(run)
    s = run_json(capsys, "sample", model, "--n", "3", "--length", "20", "--steps", "4", "--prefix", "The", "--infill", "10:and")
    assert len(s["token_ids"]) == 3 and all(len(ids) == 20 for ids in s["token_ids"])
    for est in ("mc", "quadrature", "count"):
        row = run_json(capsys, "eval", "ppl", model, "--data", str(text_corpus), "--max-sequences", "4", "--n-samples", "2",
                       "--estimator", est)["ppl"][0]
        assert row["kind"] == "bd3lm" and row["bound"] and row["estimator"] == est and row["ppl_seq_mean"] >= row["ppl"] - 1e-9
    gen = run_json(capsys, "eval", "gen", model, "--judge", str(gpt2_judge), "--n", "2", "--steps", "2", "--length", "16")
    assert gen["gen"][0]["length"] == 16
    mv = run_json(capsys, "eval", "mauve", model, "--prompts", str(webtext), "--prompt-tokens", "6", "--continuation-tokens", "6",
                  "--n", "8", "--seeds", "0", "--judge", str(gpt2_judge), "--num-buckets", "2", "--kmeans-num-redo", "1", "--steps", "2")
    assert 0 < mv["mauve"]["mauve"] <= 1
    h = run_json(capsys, "eval", "harness", model, "--tasks", "dlm_cloze,dlm_choice", "--limit", "2", "--n-samples", "2")
    assert set(h["harness"]["results"]) == {"dlm_cloze", "dlm_choice"}
    lat = run_json(capsys, "bench", "latency", model, "--ar", str(ar_run), "--steps", "1,2", "--lengths", "16", "--batch", "1", "--repeats", "1")
    assert len(lat["latency"]["rows"]) == 3
    lat = run_json(capsys, "bench", "latency", "bd3lm", "--random-init", "tiny", "--steps", "2", "--lengths", "32", "--batch", "1",
                   "--repeats", "1")
    assert any(r.get("nfe") for r in lat["latency"]["rows"])


def test_bad_block_settings_fail_before_any_work(text_corpus, tmp_path, capsys):
    for bad, words in ((["diffusion.block_size=5"], "must divide model.seq_len=32"),
                       (["diffusion.clip_min=0.8", "diffusion.clip_max=0.3"], "must exceed diffusion.clip_min")):
        code = main(["train", "tiny", "model.kind=bd3lm", "model.seq_len=32", *bad, f"data.train={text_corpus}",
                     f"out_dir={tmp_path / 'run'}", "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and words in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "run").exists()


def test_sample_stop_at_eos(text_corpus, tmp_path, capsys, monkeypatch):
    """`dlm sample --stop-at-eos` reaches bd3lm's sampler: with a network that always predicts
    end-of-text, each row is one eos then padding and only the first block is sampled; a kind
    without the option refuses it in one line."""
    from fixtures_eval_runs import TINY

    import dlmkit.generate.text as text

    runs = {}
    for kind in ("bd3lm", "mdlm"):
        runs[kind] = tmp_path / kind
        run_json(capsys, "train", "tiny", *TINY, f"model.kind={kind}", "diffusion.block_size=8", "train.steps=1",
                 f"data.train={text_corpus}", f"out_dir={runs[kind]}")
    load = text.load_model

    def eos_always(path, device):
        model, tok = load(path, device)
        with torch.no_grad():
            model.net.head.bias.zero_()
            model.net.head.bias[tok.eos_id] = 50.0
        return model, tok

    monkeypatch.setattr(text, "load_model", eos_always)
    argv = ("sample", str(runs["bd3lm"]), "--n", "2", "--length", "32", "--steps", "3")
    full = run_json(capsys, *argv)
    assert full["nfe"] == 3 * 4  # four blocks of 8, three steps each
    cut = run_json(capsys, *argv, "--stop-at-eos")
    _, tok = load(runs["bd3lm"], "cpu")
    assert cut["nfe"] == 3 and full["token_ids"] != cut["token_ids"]
    assert cut["token_ids"] == [[tok.eos_id] + [tok.pad_id] * 31] * 2
    code = main(["sample", str(runs["mdlm"]), "--n", "1", "--steps", "2", "--stop-at-eos"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "stop_at_eos" in err and len(err.splitlines()) == 1, err
