"""Latency rows and plot for random-init models; the report gathers every kind of result."""

import json

import pytest

from dlmkit.errors import DlmError
from dlmkit.eval.tasks.latency import latency_benchmark, plot_latency
from dlmkit.eval.report import collect, write_report


@pytest.fixture(scope="module")
def latency(diffusion_kinds):
    if not diffusion_kinds:
        pytest.skip("no diffusion kind registered yet")
    return latency_benchmark(diffusion_kinds[0], random_init="tiny", steps=[1, 4], lengths=[16], batches=[1, 2], repeats=2, warmup=1, progress=False)


def test_latency_rows(latency, tmp_path):
    rows = latency["latency"]["rows"]
    assert len(rows) == 2 * (2 + 1)
    ar = [r for r in rows if r["kind"] == "ar"]
    assert len(ar) == 2 and all(r["steps"] is None and r["nfe"] == 16 for r in ar)
    for r in rows:
        assert r["seconds_per_sequence"] == pytest.approx(r["seconds_median"] / r["batch"])
        assert len(r["seconds_all"]) == 2
    png = plot_latency(latency, str(tmp_path / "lat.png"))
    assert (tmp_path / "lat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.endswith("lat.png")


def test_max_timed_steps_scales_linear_samplers_only():
    res = latency_benchmark("sedd_absorb", random_init="tiny", ar_random=False, steps=[2, 6], lengths=[8], batches=[1], repeats=1,
                            warmup=0, max_timed_steps=2, progress=False)
    two, six = res["latency"]["rows"]
    assert "extrapolated_from" not in two and six["extrapolated_from"] == 2 and six["nfe"] == 6
    assert six["seconds_median"] > 0
    with pytest.raises(DlmError, match="cached masked sampler"):
        latency_benchmark("mdlm", random_init="tiny", ar_random=False, steps=[4], lengths=[8], batches=[1], repeats=1,
                          max_timed_steps=2, progress=False)
    rows = latency_benchmark("mdlm", random_init="tiny", ar_random=False, sampler="ancestral", steps=[4], lengths=[8], batches=[1],
                             repeats=1, warmup=0, max_timed_steps=2, progress=False)["latency"]["rows"]
    assert rows[0]["extrapolated_from"] == 2


def test_latency_rejects_ar_first_and_long_lengths(ar_run, diffusion_runs):
    with pytest.raises(DlmError, match="AR model"):
        latency_benchmark(str(ar_run), steps=[1], lengths=[8], batches=[1], repeats=1, progress=False)
    for run in list(diffusion_runs.values())[:1]:
        with pytest.raises(DlmError, match="exceed"):
            latency_benchmark(str(run), ar=str(ar_run), steps=[1], lengths=[999], batches=[1], repeats=1, progress=False)


def test_report_from_results(latency, tmp_path):
    gen = {"gen": [
        {"model": "m", "kind": "mdlm", "sampling": "default sampler", "steps": s, "nfe": s, "n": 4, "length": 16, "seed": 0, "precision": "p",
         "judge": "j", "gen_ppl": 100.0 / s, "gen_ppl_seq_mean": 110.0 / s, "unique_unigram_fraction": 0.9, "unigram_entropy": 3.0,
         "repetition_rate": 0.1, "samples_per_s": 2.0} for s in (2, 8)
    ] + [{"model": "a", "kind": "ar", "sampling": "ancestral", "steps": None, "nfe": 16, "n": 4, "length": 16, "seed": 0, "precision": "p",
          "judge": "j", "gen_ppl": 40.0, "gen_ppl_seq_mean": 45.0, "unique_unigram_fraction": 0.8, "unigram_entropy": 2.9,
          "repetition_rate": 0.2, "samples_per_s": None}]}
    mauve = {"mauve": {"model": "m", "kind": "mdlm", "steps": 8, "mauve": 0.5, "mauve_std": 0.1, "seeds": [0, 1], "documents": 10,
                       "skipped_short": 1, "prompt_tokens": 4, "continuation_tokens": 4, "features": "f"}}
    files = []
    for k, obj in enumerate((gen, mauve, latency)):
        f = tmp_path / f"r{k}.json"
        f.write_text("some human output\n" + json.dumps(obj) + "\n")  # a command's saved stdout
        files.append(f)
    out = write_report(files, tmp_path / "rep" / "report.md")
    assert out["found"] == {"ppl": 0, "gen": 3, "mauve": 1, "harness": 0, "latency": 1}
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Generative perplexity" in text and "MAUVE" in text and "latency" in text
    assert len(out["plots"]) == 3 and all((tmp_path / "rep" / p.split("/")[-1]).is_file() for p in out["plots"])
    assert collect({"suite": [gen, {"nested": mauve}]})["gen"] == gen["gen"]
    with pytest.raises(DlmError, match="no evaluation results"):
        write_report([{"x": 1}], tmp_path / "empty.md")
