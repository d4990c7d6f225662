"""`dlm eval gen|mauve|harness|report` and `dlm bench latency` end to end: JSON last lines."""

import json

from dlmkit.cli import main


def run_json(capsys, *argv):
    code = main([*argv, "--json", "--no-progress"] if argv[:2] != ("eval", "report") else [*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_cli_eval_suite_end_to_end(ar_run, diffusion_runs, gpt2_judge, webtext, tmp_path, capsys):
    model = str(next(iter(diffusion_runs.values()))) if diffusion_runs else str(ar_run)
    gen = run_json(capsys, "eval", "gen", model, "--judge", str(gpt2_judge), "--n", "3", "--steps", "2,4", "--length", "12")
    assert len(gen["gen"]) == 2 and gen["gen"][0]["length"] == 12
    mv = run_json(capsys, "eval", "mauve", str(ar_run), "--prompts", str(webtext), "--prompt-tokens", "6", "--continuation-tokens", "6",
                  "--n", "12", "--seeds", "0", "--judge", str(gpt2_judge), "--num-buckets", "3", "--kmeans-num-redo", "1")
    assert 0 < mv["mauve"]["mauve"] <= 1
    h = run_json(capsys, "eval", "harness", model, "--tasks", "dlm_cloze,dlm_choice", "--limit", "3", "--n-samples", "2")
    assert set(h["harness"]["results"]) == {"dlm_cloze", "dlm_choice"}
    lat_args = ["bench", "latency", model, "--ar", str(ar_run)] if diffusion_runs else ["bench", "latency", "mdlm", "--random-init", "tiny"]
    lat = run_json(capsys, *lat_args, "--steps", "1,2", "--lengths", "8", "--batch", "1", "--repeats", "1", "--plot", str(tmp_path / "lat.png"))
    assert (tmp_path / "lat.png").is_file() and len(lat["latency"]["rows"]) == 3
    files = []
    for name, obj in (("gen", gen), ("mauve", mv), ("harness", h), ("lat", lat)):
        (tmp_path / f"{name}.json").write_text(json.dumps(obj))
        files.append(str(tmp_path / f"{name}.json"))
    rep = run_json(capsys, "eval", "report", *files, "--out", str(tmp_path / "report.md"))
    assert rep["found"]["harness"] == 1 and (tmp_path / "report.md").is_file()


def test_cli_errors_are_one_line(ar_run, tmp_path, capsys):
    for argv in (["eval", "gen", str(ar_run), "--judge", str(tmp_path / "none")],
                 ["eval", "report", str(tmp_path / "none.json"), "--out", str(tmp_path / "r.md")],
                 ["bench", "latency", str(ar_run), "--steps", "x"]):
        code = main(argv)
        _, err = capsys.readouterr()
        assert code == 2 and err.strip().startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_eval_ppl_count_estimator(ar_run, diffusion_runs, text_corpus, tmp_path, capsys):
    """`--estimator count` on time-free mdlm estimates the same bound as `mc` (within 5 standard errors);
    kinds told the noise level refuse it in one line; AR's exact NLL ignores it as it ignores mc/quadrature."""
    from fixtures_eval_runs import train_tiny

    if "mdlm" not in diffusion_runs:
        return
    ppl = ("eval", "ppl", "--data", str(text_corpus), "--max-sequences", "6", "--n-samples", "16")
    rows = {est: run_json(capsys, *ppl, str(diffusion_runs["mdlm"]), "--estimator", est)["ppl"][0] for est in ("count", "mc")}
    count, mc = rows["count"], rows["mc"]
    assert count["estimator"] == "count" and count["bound"] and count["sequences"] == 6
    assert count["nll_stderr_mc"] < mc["nll_stderr_mc"]  # 0.004 vs 0.21 nats: the noise level integrated exactly
    assert abs(count["nll_per_token"] - mc["nll_per_token"]) < 5 * (count["nll_stderr_mc"] ** 2 + mc["nll_stderr_mc"] ** 2) ** 0.5
    assert run_json(capsys, *ppl, str(ar_run), "--estimator", "count")["ppl"][0]["estimator"] == "exact"
    timed = [diffusion_runs[k] for k in ("sedd_absorb", "sedd_uniform") if k in diffusion_runs]
    timed.append(train_tiny(tmp_path / "sigma", text_corpus, "mdlm_sigma", 1))
    for run in timed:
        code = main([*ppl, str(run), "--estimator", "count", "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: the count estimator needs a time-free") and len(err.splitlines()) == 1, err
