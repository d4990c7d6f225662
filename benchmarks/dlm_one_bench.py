"""DLM-One at this machine's scale: distil one-step students from DiffuSeq teachers and report
analogues of the paper's tables (Chen, Zhang, Zhou 2025).

Per task (``numbers``: ``benchmarks/number_words.py``; ``qqp``, ``quasar_t``: splits of
shared/data/README.md, train on ``test.jsonl``, evaluate on ``valid.jsonl``):

* the ``diffuseq`` teacher and the ``ar`` model of ``benchmarks/diffuseq_bench.py`` in
  ``WORK/TASK`` (reused when that bench trained them; trained here otherwise);
* a DLM-One student through ``dlmkit.recipes.dlm_one.distill_dlm_one`` (stage 1 SiD, stage 2
  SiD + adversarial, Table 5 defaults unless overridden) in ``WORK/TASK/dlm_one_S1_S2``.

Tables:

* **Table 1** quality: teacher at its best step count vs the one-step student (stage 1 and
  final) vs AR (greedy): BLEU, ROUGE-L, BERTScore, and the diversity columns Dist-1, Self-BLEU,
  Div-4 over ``--candidates`` seeds, plus ``empty`` (fraction of empty outputs) and ``repeat``
  (fraction of outputs whose commonest token is more than half of it): degenerate students
  (one repeated token, empty outputs) show there. With ``--diffuseq-json`` the teacher's row and
  its BLEU over steps come from the DiffuSeq bench's report (same run, sources and seed);
* **Table 2** latency: wall time per sample of the teacher at ``T`` (2000) steps and at its best
  step count, the student (1 step), and AR with its KV cache, at batch 1 (one source at a time)
  and at each ``--latency-batches`` size, all in this process on the same sources, medians of
  ``--time-repeats`` interleaved rounds; ``targets`` holds the speed-up and BLEU ratios;
* **Table 3** stages: stage 1 (SiD) vs stage 2 (SiD + adversarial);
* **Table 4** ``k`` re-noise/denoise rounds of the student's own output (``k = 0, 1, 2, 4``);
* **Table 6** sensitivity to ``t_init`` (short stage-1 distillations at several ``t_init``);
* **Figure 3** the teacher's BLEU against its steps, with the student's points at 1 + k network
  calls (JSON, and a PNG when matplotlib is present).

The reported CPU run, after the DiffuSeq bench's run of the same task (Table 5's defaults with
the learning rates x10: 900 distillation steps instead of 50k)::

    python benchmarks/dlm_one_bench.py --tasks numbers --seq-len 32 --bpe-vocab 512 --save-every 1000 \
        --eval-sources 100 --no-progress --work runs/num --train-steps 4000 --ar-steps 4000 \
        --diffuseq-json benchmarks/results/diffuseq_numbers.json --stage1-steps 600 --stage2-steps 300 \
        --eval-every 100 --t-init-list 1000 1490 1900 --t-init-steps 100 --candidates 5 \
        --set stage1.lr_theta=1e-4 --set stage1.lr_psi=3e-4 --set stage2.lr_theta=1e-4 --set stage2.lr_psi=1e-4 \
        --out benchmarks/results/dlm_one_numbers.json

Smoke version (a minute or two on 2 CPU cores; figures are a smoke test, not a reproduction)::

    python benchmarks/dlm_one_bench.py --smoke --work runs/dlm_one_smoke --out benchmarks/results/dlm_one_smoke.json

Writes JSON (``--out``) and markdown (``--out`` with ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diffuseq_bench as DB  # noqa: E402

from dlmkit.recipes.dlm_one import DistillConfig, apply_overrides, distill_dlm_one  # noqa: E402
from dlmkit.methods.dlm_one import paper_step  # noqa: E402
from dlmkit.generate.seq2seq import generate_targets  # noqa: E402
from dlmkit.hub.load import load as load_model  # noqa: E402

TASKS = ("qqp", "quasar_t", "numbers")


def evaluate(model: Any, tok: Any, sources: list[str], refs: list[Any], *, steps: int, candidates: int, args: argparse.Namespace,
             max_src_len: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Quality (candidate 0) and diversity (across candidates) of one configuration, with its time."""
    res = generate_targets(model, tok, sources, steps=steps, candidates=candidates, seed=args.seed,
                           batch_size=args.eval_batch, max_src_len=max_src_len, options=options)
    cands = res["candidates"]
    hyps = [c[0] for c in cands]
    out = DB.metrics(hyps, refs, sources=sources, candidates=cands if candidates > 1 else None, bertscore=args.bertscore)
    out.update(nfe=res["nfe"], seconds_per_sample=res["seconds_per_sample"], steps=steps)
    out["examples"] = [{"source": s, "reference": r, "output": h} for s, r, h in list(zip(sources, refs, hyps))[:3]]
    return DB.with_outputs(out, sources, refs, hyps, cands if candidates > 1 else None)


def latency(model: Any, tok: Any, sources: list[str], *, steps: int, max_src_len: int, batch_size: int = 1,
            options: dict[str, Any] | None = None) -> float:
    """Wall time per sample generating ``batch_size`` sources at a time (batch 1: the latency the paper compares)."""
    res = generate_targets(model, tok, sources, steps=steps, candidates=1, seed=0, batch_size=batch_size,
                           max_src_len=max_src_len, options=options)
    return res["seconds_per_sample"]


def latency_tables(systems: dict[str, tuple[Any, int]], tok: Any, sources: list[str], *, batches: list[int],
                   n_one: int, repeats: int, max_src_len: int) -> dict[str, dict[str, float]]:
    """Seconds per sample of every system (model, steps) at each batch size: batch 1 over the first
    ``n_one`` sources one at a time, batch ``b`` over one full batch of ``b`` sources; medians of
    ``repeats`` rounds, the systems interleaved within each round (same process, same load)."""
    out = {}
    for b in batches:
        srcs = sources[:n_one] if b == 1 else (sources * b)[:b]
        times: dict[str, list[float]] = {k: [] for k in systems}
        for _ in range(repeats):
            for name, (model, steps) in systems.items():
                times[name].append(latency(model, tok, srcs, steps=steps, max_src_len=max_src_len, batch_size=b))
        out[str(b)] = {k: statistics.median(v) for k, v in times.items()}
    return out


def teacher_rows(args: argparse.Namespace, task: str, teacher: Any, tok: Any, sources: list[str], refs: list[Any],
                 max_src_len: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The teacher's BLEU over step counts and its row at the best step count, from the DiffuSeq
    bench's JSON (``--diffuseq-json``, same run folder and eval sources) or measured here."""
    if args.diffuseq_json:
        rep = json.loads(Path(args.diffuseq_json).read_text())
        found = next((t for t in rep["tasks"] if t["task"] == task), None)
        if found is None or found["n_eval_sources"] != len(sources) or found["diffuseq_train"]["run"] != str(Path(args.work) / task / "diffuseq"):
            raise SystemExit(f"{args.diffuseq_json}: no {task} result for this run folder and {len(sources)} eval sources")
        row = next(r for r in found["rows"] if r["system"] == "DiffuSeq")
        return found["bleu_vs_steps"], {**row, "nfe": row["steps"], "from": args.diffuseq_json}
    sweep = DB.bleu_sweep(teacher, tok, sources, refs, args.steps_list, seed=args.seed, batch_size=args.eval_batch,
                          max_src_len=max_src_len)
    best = max(sweep, key=lambda x: x["BLEU"])["steps"]
    return sweep, evaluate(teacher, tok, sources, refs, steps=best, candidates=args.candidates, args=args, max_src_len=max_src_len)


def run_task(args: argparse.Namespace, task: str, work: Path) -> dict[str, Any]:
    pairs, sources, refs, rest = DB.task_pairs(args, task)
    folder = work / task
    max_src_len = args.max_src_len.get(task, 0)
    teacher_info = DB.ensure_teacher(args, task, folder, pairs)
    teacher_dir = folder / "diffuseq"
    teacher, tok = load_model(teacher_dir)
    T = teacher.method.T
    ar, ar_info = DB.ensure_ar(args, task, folder) if args.ar else (None, None)
    train_file, valid_file = folder / "train.jsonl", folder / "valid.jsonl"
    DB.write_jsonl(train_file, pairs)
    # checkpoints are chosen on the next sources of the evaluation file, never on the reported ones
    held = rest[: args.select_sources]
    if not held:
        raise SystemExit(f"{task}: no evaluation sources left after the first {len(sources)} to choose checkpoints on")
    DB.write_jsonl(valid_file, [(s, r if isinstance(r, str) else r[0]) for s, r in held])
    # the student (a finished distillation in the run folder is reused)
    tag = "".join(f"_{kv.replace('=', '')}" for kv in args.set)  # another --set, another run folder
    out_dir = folder / f"dlm_one_{args.stage1_steps}_{args.stage2_steps}{tag}"
    dcfg = apply_overrides(DistillConfig(), [f"stage1.steps={args.stage1_steps}", f"stage2.steps={args.stage2_steps}",
                                              f"batch_size={args.batch_size}", f"eval_every={args.eval_every}",
                                              f"save_every={args.eval_every}", f"eval_n={len(held)}", *args.set])
    t0 = time.perf_counter()
    dres = distill_dlm_one(str(teacher_dir), str(out_dir), dcfg, data=str(train_file), valid=str(valid_file),
                           progress=not args.no_progress, resume=(out_dir / "distill.json").is_file())
    distill_seconds = time.perf_counter() - t0
    student, _ = load_model(dres["student"])
    stage1, _ = load_model(dres["stage1"]["best"]) if dres["stage1"].get("best") else (student, None)
    K = args.candidates
    sweep, teacher_best = teacher_rows(args, task, teacher, tok, sources, refs, max_src_len)
    best_steps = max(sweep, key=lambda x: x["BLEU"])
    table1 = {f"teacher ({teacher_best['steps']} steps)": teacher_best,
              "student stage 1": evaluate(stage1, tok, sources, refs, steps=1, candidates=K, args=args, max_src_len=max_src_len),
              "student (final)": evaluate(student, tok, sources, refs, steps=1, candidates=K, args=args, max_src_len=max_src_len)}
    if ar is not None:
        table1["ar (greedy)"] = evaluate(ar, tok, sources, refs, steps=1, candidates=1, args=args, max_src_len=max_src_len)
    # Table 4: k re-noise rounds
    table4 = {k: table1["student (final)"] if k == 0  # the student's default is refine 0: Table 1's row
              else evaluate(student, tok, sources, refs, steps=1, candidates=K, args=args, max_src_len=max_src_len, options={"refine": k})
              for k in args.refine_list}
    # Table 2: latency at batch 1 (and the other --latency-batches), every system in this process on the same sources
    systems = {f"teacher {T} steps": (teacher, T), f"teacher best ({best_steps['steps']} steps)": (teacher, best_steps["steps"]),
               "student 1 step": (student, 1)}
    if ar is not None:
        systems["ar (KV cache)"] = (ar, 1)
    by_batch = latency_tables(systems, tok, sources, batches=sorted({1, *args.latency_batches}), n_one=args.time_sources,
                              repeats=args.time_repeats, max_src_len=max_src_len)
    table2 = by_batch["1"]
    # Table 6: t_init sensitivity (short stage-1 runs)
    table6 = {}
    for t_init in args.t_init_list:
        t_init = paper_step(t_init, T)
        c = apply_overrides(DistillConfig(), [f"stage1.steps={args.t_init_steps}", "stage2.steps=0", f"t_init={t_init}",
                                              f"batch_size={args.batch_size}", f"eval_every={args.t_init_steps}", "save_every=0",
                                              f"eval_n={len(held)}", *args.set])
        d = folder / f"t_init_{t_init}_{args.t_init_steps}{tag}"
        r = distill_dlm_one(str(teacher_dir), str(d), c, data=str(train_file), valid=str(valid_file),
                            progress=not args.no_progress, resume=(d / "distill.json").is_file())
        m, _ = load_model(r["student"])
        table6[t_init] = evaluate(m, tok, sources, refs, steps=1, candidates=K, args=args, max_src_len=max_src_len)
    final = table1["student (final)"]
    targets = {"bleu_ratio_vs_teacher_best": final["BLEU"] / best_steps["BLEU"] if best_steps["BLEU"] else None,
               "speedup_vs_teacher_T": table2[f"teacher {T} steps"] / table2["student 1 step"]}
    if ar is not None:
        targets["speedup_vs_ar"] = table2["ar (KV cache)"] / table2["student 1 step"]
    for b, tab in by_batch.items():
        if b != "1":
            targets[f"speedup_vs_teacher_T_batch{b}"] = tab[f"teacher {T} steps"] / tab["student 1 step"]
            if ar is not None:
                targets[f"speedup_vs_ar_batch{b}"] = tab["ar (KV cache)"] / tab["student 1 step"]
    figure3 = {"teacher": [(x["steps"], x["BLEU"]) for x in sweep],
               "student": [(k + 1, r["BLEU"]) for k, r in table4.items()]}  # k refine rounds = k + 1 NFEs
    return {"task": task, "split": DB.SPLITS.get(task), "T": T, "n_eval_sources": len(sources), "teacher": teacher_info,
            "teacher_bleu_vs_steps": sweep, "best_steps": best_steps, "table1": table1, "table2_latency_s": table2,
            "table2_latency_s_by_batch": by_batch,
            "targets": targets,
            "table3": {"stage 1 (SiD)": table1["student stage 1"], "stage 2 (SiD + adv)": table1["student (final)"]},
            "table4": {str(k): v for k, v in table4.items()}, "table6": {str(k): v for k, v in table6.items()}, "figure3": figure3,
            "distill": dres, "val_bleu_curve": val_bleu_curve(out_dir),
            "seconds": {"ar_train": (ar_info or {}).get("seconds"), "distill": distill_seconds}}


def val_bleu_curve(run: Path) -> list[dict[str, Any]]:
    """The distillation's validation BLEU at every evaluation (stage, step), from its ``metrics.jsonl``."""
    path = run / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()] if path.is_file() else []
    return [{"stage": r["stage"], "step": r["step"], "val_bleu": r["val_bleu"]} for r in rows if "val_bleu" in r]


COLS = ("BLEU", "exact", "rouge_l", "bertscore_f1", "dist1", "self_bleu", "div4", "empty", "repeat", "nfe")


def _row(name: str, r: dict[str, Any]) -> str:
    cells = [f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in COLS]
    return f"| {name} | " + " | ".join(cells) + " |"


def render(results: list[dict[str, Any]]) -> str:
    lines = []
    head = "| row | " + " | ".join(COLS) + " |\n|---|" + "---|" * len(COLS)
    for res in results:
        lines += [f"## {res['task']} ({res['split']})", "", "### Table 1: quality and diversity", head]
        lines += [_row(k, v) for k, v in res["table1"].items()]
        lines += ["", "### Table 2: latency per sample, batch 1 (s)", "| row | s/sample |", "|---|---|"]
        lines += [f"| {k} | {v:.5f} |" for k, v in res["table2_latency_s"].items()]
        for b, tab in res.get("table2_latency_s_by_batch", {}).items():
            if b != "1":
                lines += ["", f"Latency per sample, batch {b} (s): " + ", ".join(f"{k} {v:.5f}" for k, v in tab.items())]
        lines += ["", "Targets: " + ", ".join(f"{k} {v:.3g}" for k, v in res["targets"].items() if v is not None)]
        lines += ["", "### Table 3: stages", head] + [_row(k, v) for k, v in res["table3"].items()]
        lines += ["", "### Table 4: k re-noise/denoise rounds", head] + [_row(f"k={k}", v) for k, v in res["table4"].items()]
        lines += ["", "### Table 6: t_init", head] + [_row(f"t_init={k}", v) for k, v in res["table6"].items()]
        lines += ["", "Validation BLEU while distilling (stage/step): " + ", ".join(
            f"{c['stage']}/{c['step']}: {c['val_bleu']:.4f}" for c in res.get("val_bleu_curve", []))]
        lines += ["", "Teacher BLEU over steps: " + ", ".join(f"{x['steps']}: {x['BLEU']:.4f}" for x in res["teacher_bleu_vs_steps"])]
        lines.append("")
    return "\n".join(lines)


def plot_figure3(results: list[dict[str, Any]], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results):
        for name, pts in res["figure3"].items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("network calls (teacher: steps; student: 1 + k)")
        ax.set_ylabel("BLEU")
        ax.set_title(res["task"])
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    DB.add_shared_args(p)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--out", default="benchmarks/results/dlm_one.json")
    p.add_argument("--diffuseq-json", default=None,
                   help="take the teacher's BLEU over steps and its best-step row from this DiffuSeq bench report "
                        "(same --work and eval sources) instead of sampling them again")
    p.add_argument("--ar", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--stage1-steps", type=int, default=1000)
    p.add_argument("--stage2-steps", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--select-sources", type=int, default=64,
                   help="validation BLEU for keeping the best checkpoint: the sources after the reported ones")
    p.add_argument("--set", action="append", default=[], help="distillation override KEY=VALUE (repeatable)")
    p.add_argument("--time-sources", type=int, default=8, help="sources timed one at a time (Table 2)")
    p.add_argument("--latency-batches", type=int, nargs="+", default=[1, 32], help="batch sizes timed (batch 1 always)")
    p.add_argument("--time-repeats", type=int, default=3, help="interleaved timing rounds (medians)")
    p.add_argument("--steps-list", type=int, nargs="+", default=[10, 50, 100, 500, 1000, 2000])
    p.add_argument("--refine-list", type=int, nargs="+", default=[0, 1, 2, 4])
    p.add_argument("--t-init-list", type=int, nargs="*", default=[1000, 1490, 1900], help="in units of T=2000 (scaled); none: no Table 6")
    p.add_argument("--t-init-steps", type=int, default=200)
    p.add_argument("--candidates", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="a minute or two: tiny model, qqp, few steps and sources")
    args = p.parse_args(argv)
    if args.smoke:
        args.tasks, args.bpe_vocab, args.seq_len, args.d_model, args.n_layers = ["qqp"], 512, 32, 32, 1
        args.emb_dim, args.batch_size, args.lr, args.train_steps, args.train_pairs = 16, 16, 3e-3, 40, 400
        args.stage1_steps, args.stage2_steps, args.eval_every, args.eval_sources, args.candidates = 6, 4, 3, 12, 2
        args.steps_list, args.refine_list, args.t_init_list, args.t_init_steps = [5, 20], [0, 1], [1000, 1490], 3
        args.time_sources, args.ar_steps, args.bertscore = 4, 40, False
        args.latency_batches, args.time_repeats = [1, 4], 1
        args.no_progress = True
    return DB.finish_args(args)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    work = Path(args.work)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    for task in args.tasks:  # rewritten after every task
        results.append(run_task(args, task, work))
        report = {"benchmark": "dlm_one", "settings": {k: v for k, v in vars(args).items() if k != "max_src_len"},
                  "device": "cpu", "threads": torch.get_num_threads(), "seconds": time.perf_counter() - start,
                  "complete": len(results) == len(args.tasks),
                  "note": "BLEU is DiffuSeq's mean sentence BLEU; diversity over --candidates seeds; empty/repeat flag "
                          "degenerate outputs; times are wall clock on a shared CPU; CPU-scale splits, not the paper's.",
                  "tasks": results}
        DB.write_report(out, report)  # the texts behind each row go to OUT.outputs.jsonl
    md = render(results)
    plot = plot_figure3(results, out.with_suffix(".png"))
    if plot:
        md += f"\n![Figure 3 analogue]({Path(plot).name})\n"
    out.with_suffix(".md").write_text(f"# DLM-One benchmark\n\n{md}\n", encoding="utf-8")
    print(md)
    print(f"\nwrote {out} and {out.with_suffix('.md')} in {report['seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
