"""DLM-One at this machine's scale: distil one-step students from DiffuSeq teachers and report
analogues of the paper's tables (Chen, Zhang, Zhou 2025).

Per task (``qqp``, ``quasar_t``; splits of shared/data/README.md: train on ``test.jsonl``,
evaluate on ``valid.jsonl``):

* a ``diffuseq`` teacher (``dlmkit.train.loop.train``; or ``--teacher RUN``) and an ``ar`` model
  on the same rows (``benchmarks/diffuseq_bench.py``'s helpers);
* a DLM-One student through ``dlmkit.distill.dlm_one.distill_dlm_one`` (stage 1 SiD, stage 2
  SiD + adversarial, Table 5 defaults unless overridden).

Tables:

* **Table 1** quality: teacher at its best step count vs the one-step student (stage 1 and
  final) vs AR (greedy): BLEU, ROUGE-L, BERTScore, and the diversity columns Dist-1, Self-BLEU,
  Div-4 over ``--candidates`` seeds, plus ``empty`` (fraction of empty outputs) and ``repeat``
  (fraction of outputs whose commonest token is more than half of it): degenerate students
  (one repeated token, empty outputs) show there;
* **Table 2** speed: wall time per sample of the teacher at ``T`` (2000) steps and at its best
  step count, the student (1 step), and AR with its KV cache, in the same process;
* **Table 3** stages: stage 1 (SiD) vs stage 2 (SiD + adversarial) BLEU and diversity;
* **Table 4** ``k`` re-noise/denoise rounds of the student's own output (``k = 0, 1, 2, 4``);
* **Table 6** sensitivity to ``t_init`` (short stage-1 distillations at several ``t_init``);
* **Figure 3** quality-diversity trade-off: (Self-BLEU, BLEU) points of the teacher over step
  counts and the student over ``k`` (JSON, and a PNG when matplotlib is present).

Smoke version (a minute or two on 2 CPU cores; figures are a smoke test, not a reproduction)::

    python benchmarks/dlm_one_bench.py --smoke --out benchmarks/results/dlm_one_smoke.json

Writes JSON (``--out``) and markdown (``--out`` with ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from statistics import fmean
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diffuseq_bench as DB  # noqa: E402

from dlmkit.config import load_config  # noqa: E402
from dlmkit.data.seq2seq_blocks import build_blocks  # noqa: E402
from dlmkit.distill.dlm_one import DistillConfig, apply_overrides, distill_dlm_one  # noqa: E402
from dlmkit.methods.dlm_one import paper_step  # noqa: E402
from dlmkit.eval import seq2seq_metrics as M  # noqa: E402
from dlmkit.sampling.seq2seq_api import generate_targets  # noqa: E402
from dlmkit.train.checkpoint import load_model  # noqa: E402
from dlmkit.train.loop import train  # noqa: E402

TASKS = ("qqp", "quasar_t")


def degeneracy(hyps: list[str]) -> dict[str, float]:
    """Fractions of empty outputs and of outputs dominated (> 50%) by one repeated token."""
    empty = sum(1 for h in hyps if not h.split())
    rep = 0
    for h in hyps:
        toks = h.split()
        if len(toks) >= 2 and Counter(toks).most_common(1)[0][1] > len(toks) / 2:
            rep += 1
    n = max(1, len(hyps))
    return {"empty": empty / n, "repeat": rep / n, "mean_len": fmean(len(h.split()) for h in hyps) if hyps else 0.0}


def evaluate(model: Any, tok: Any, sources: list[str], refs: list[str], *, steps: int, candidates: int, args: argparse.Namespace,
             max_src_len: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Quality (candidate 0) and diversity (across candidates) of one configuration, with its time."""
    res = generate_targets(model, tok, sources, steps=steps, candidates=candidates, seed=args.seed,
                           batch_size=args.eval_batch, max_src_len=max_src_len, options=options)
    cands = res["candidates"]
    hyps = [c[0] for c in cands]
    out = {"BLEU": DB._bleu(hyps, refs), "rouge_l": M.rouge_l(hyps, refs), "dist1": M.dist1(hyps)}
    if candidates > 1:
        out.update(M.seed_diversity(cands))
    out.update(degeneracy(hyps))
    out.update(nfe=res["nfe"], seconds_per_sample=res["seconds_per_sample"], steps=steps)
    out["examples"] = [{"source": s, "reference": r, "output": h} for s, r, h in list(zip(sources, refs, hyps))[:3]]
    return out


def time_per_sample(model: Any, tok: Any, sources: list[str], *, steps: int, args: argparse.Namespace, max_src_len: int,
                    options: dict[str, Any] | None = None) -> float:
    res = generate_targets(model, tok, sources, steps=steps, candidates=1, seed=args.seed, batch_size=args.eval_batch,
                           max_src_len=max_src_len, options=options)
    return res["seconds_per_sample"]


def run_task(args: argparse.Namespace, task: str, work: Path) -> dict[str, Any]:
    pairs, sources, refs = DB.task_data(Path(args.data), task)
    if args.train_pairs:
        pairs = pairs[: args.train_pairs]
    sources, refs = sources[: args.eval_sources], refs[: args.eval_sources]
    folder = work / task
    folder.mkdir(parents=True, exist_ok=True)
    max_src_len = args.max_src_len.get(task, 0)
    train_file = folder / "train.jsonl"
    train_file.write_text("".join(json.dumps({"src": s, "trg": t}) + "\n" for s, t in pairs), encoding="utf-8")
    valid_file = folder / "valid.jsonl"
    valid_file.write_text("".join(json.dumps({"src": s, "trg": t}) + "\n" for s, t in zip(sources, refs)), encoding="utf-8")
    t0 = time.perf_counter()
    if args.teacher:
        teacher_dir = Path(args.teacher)
    else:
        tok, tok_overrides = DB.make_tokenizer(args, pairs, folder / "tokenizer")
        teacher_dir = folder / "teacher"
        cfg = load_config("diffuseq-tiny", [*DB.common_overrides(args, max_src_len), *tok_overrides, f"data.train={train_file}",
                                            f"out_dir={teacher_dir}", f"train.steps={args.train_steps}",
                                            f"diffusion.continuous.emb_dim={args.emb_dim}", f"diffusion.continuous.t_sampler={args.t_sampler}"])
        train(cfg, progress=not args.no_progress)
    teacher_seconds = time.perf_counter() - t0
    teacher, tok = load_model(teacher_dir)
    T = teacher.method.T
    # AR on the same rows
    ar_seconds, ar = None, None
    if args.ar:
        cfg = load_config(str(teacher_dir / "config.yaml"), [f"train.steps={args.ar_steps or args.train_steps}"])
        blocks = build_blocks(pairs, tok, seq_len=teacher.seq_len, max_src_len=max_src_len, seed=args.seed)
        ar, ar_seconds = DB.train_ar(args, cfg, tok, blocks)
    # the student
    t0 = time.perf_counter()
    dcfg = apply_overrides(DistillConfig(), [f"stage1.steps={args.stage1_steps}", f"stage2.steps={args.stage2_steps}",
                                              f"batch_size={args.batch_size}", f"eval_every={args.eval_every}",
                                              f"save_every={args.eval_every}", f"eval_n={min(64, len(sources))}", *args.set])
    dres = distill_dlm_one(str(teacher_dir), str(folder / "dlm_one"), dcfg, data=str(train_file), valid=str(valid_file),
                           progress=not args.no_progress)
    distill_seconds = time.perf_counter() - t0
    student, stok = load_model(dres["student"])
    stage1, _ = load_model(dres["stage1"]["best"]) if dres["stage1"].get("best") else (student, None)
    K = args.candidates
    # Table 1 / Figure 3: teacher over step counts
    teacher_rows = {}
    for steps in [s for s in args.steps_list if s <= T]:
        teacher_rows[steps] = evaluate(teacher, tok, sources, refs, steps=steps, candidates=K, args=args, max_src_len=max_src_len)
    best_steps = max(teacher_rows, key=lambda s: teacher_rows[s]["BLEU"])
    table1 = {"teacher@best": {**teacher_rows[best_steps], "steps": best_steps},
              "student stage 1": evaluate(stage1, tok, sources, refs, steps=1, candidates=K, args=args, max_src_len=max_src_len),
              "student (final)": evaluate(student, tok, sources, refs, steps=1, candidates=K, args=args, max_src_len=max_src_len)}
    if ar is not None:
        table1["ar (greedy)"] = evaluate(ar, tok, sources, refs, steps=1, candidates=1, args=args, max_src_len=max_src_len)
    # Table 4: k re-noise rounds
    table4 = {k: table1["student (final)"] if k == 0  # the student's default is refine 0: Table 1's row
              else evaluate(student, tok, sources, refs, steps=1, candidates=K, args=args, max_src_len=max_src_len, options={"refine": k})
              for k in args.refine_list}
    # Table 2: speed, same process
    n_time = sources[: args.time_sources]
    table2 = {f"teacher {T} steps": time_per_sample(teacher, tok, n_time, steps=T, args=args, max_src_len=max_src_len),
              f"teacher {best_steps} steps": time_per_sample(teacher, tok, n_time, steps=best_steps, args=args, max_src_len=max_src_len),
              "student 1 step": time_per_sample(student, tok, n_time, steps=1, args=args, max_src_len=max_src_len)}
    if ar is not None:
        table2["ar (KV cache)"] = time_per_sample(ar, tok, n_time, steps=1, args=args, max_src_len=max_src_len)
    # Table 6: t_init sensitivity (short stage-1 runs)
    table6 = {}
    for t_init in args.t_init_list:
        t_init = paper_step(t_init, T)
        c = apply_overrides(DistillConfig(), [f"stage1.steps={args.t_init_steps}", "stage2.steps=0", f"t_init={t_init}",
                                              f"batch_size={args.batch_size}", f"eval_every={args.t_init_steps}", "save_every=0",
                                              f"eval_n={min(64, len(sources))}", *args.set])
        r = distill_dlm_one(str(teacher_dir), str(folder / f"t_init_{t_init}"), c, data=str(train_file), valid=str(valid_file),
                            progress=not args.no_progress)
        m, _ = load_model(r["student"])
        table6[t_init] = evaluate(m, tok, sources, refs, steps=1, candidates=K, args=args, max_src_len=max_src_len)
    figure3 = {"teacher": [(s, r.get("self_bleu"), r["BLEU"]) for s, r in teacher_rows.items()],
               "student": [(k, r.get("self_bleu"), r["BLEU"]) for k, r in table4.items()]}
    return {"task": task, "split": DB.SPLITS.get(task), "T": T, "teacher_steps": {str(k): v for k, v in teacher_rows.items()},
            "best_steps": best_steps, "table1": table1, "table2_seconds_per_sample": table2,
            "table3": {"stage 1 (SiD)": table1["student stage 1"], "stage 2 (SiD + adv)": table1["student (final)"]},
            "table4": {str(k): v for k, v in table4.items()}, "table6": {str(k): v for k, v in table6.items()}, "figure3": figure3,
            "distill": dres, "seconds": {"teacher_train": teacher_seconds, "ar_train": ar_seconds, "distill": distill_seconds}}


COLS = ("BLEU", "rouge_l", "dist1", "self_bleu", "div4", "empty", "repeat", "nfe")


def _row(name: str, r: dict[str, Any]) -> str:
    cells = [f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in COLS]
    return f"| {name} | " + " | ".join(cells) + " |"


def render(results: list[dict[str, Any]]) -> str:
    lines = []
    head = "| row | " + " | ".join(COLS) + " |\n|---|" + "---|" * len(COLS)
    for res in results:
        lines += [f"## {res['task']} ({res['split']})", "", "### Table 1: quality and diversity", head]
        lines += [_row(k, v) for k, v in res["table1"].items()]
        lines += ["", "### Table 2: wall time per sample (s)", "| row | s/sample |", "|---|---|"]
        lines += [f"| {k} | {v:.5f} |" for k, v in res["table2_seconds_per_sample"].items()]
        lines += ["", "### Table 3: stages", head] + [_row(k, v) for k, v in res["table3"].items()]
        lines += ["", "### Table 4: k re-noise/denoise rounds", head] + [_row(f"k={k}", v) for k, v in res["table4"].items()]
        lines += ["", "### Table 6: t_init", head] + [_row(f"t_init={k}", v) for k, v in res["table6"].items()]
        lines += ["", "### Teacher over step counts", head] + [_row(f"{k} steps", v) for k, v in res["teacher_steps"].items()]
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
            pts = [p for p in pts if p[1] is not None]
            ax.plot([p[1] for p in pts], [p[2] for p in pts], "o-", label=name)
            for label, x, y in pts:
                ax.annotate(str(label), (x, y), fontsize=7)
        ax.set_xlabel("Self-BLEU (lower = more diverse)")
        ax.set_ylabel("BLEU")
        ax.set_title(res["task"])
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(Path(os.environ.get("DLM_SHARED_DATA", repo / ".." / "shared" / "data")) / "seq2seq"))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--teacher", default=None, help="an existing diffuseq run to distil (one task only)")
    p.add_argument("--work", default="runs/dlm_one_bench")
    p.add_argument("--out", default="benchmarks/results/dlm_one.json")
    p.add_argument("--tokenizer", choices=("bpe", "bert"), default="bpe")
    p.add_argument("--bpe-vocab", type=int, default=4096)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=3)
    p.add_argument("--emb-dim", type=int, default=128)
    p.add_argument("--t-sampler", default="lossaware")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--ar", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--ar-steps", type=int, default=None)
    p.add_argument("--train-pairs", type=int, default=0)
    p.add_argument("--stage1-steps", type=int, default=1000)
    p.add_argument("--stage2-steps", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--set", action="append", default=[], help="distillation override KEY=VALUE (repeatable)")
    p.add_argument("--eval-sources", type=int, default=200)
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--time-sources", type=int, default=16)
    p.add_argument("--steps-list", type=int, nargs="+", default=[10, 50, 200, 1000, 2000])
    p.add_argument("--refine-list", type=int, nargs="+", default=[0, 1, 2, 4])
    p.add_argument("--t-init-list", type=int, nargs="+", default=[1000, 1490, 1900], help="in units of T=2000 (scaled)")
    p.add_argument("--t-init-steps", type=int, default=200)
    p.add_argument("--candidates", type=int, default=5)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="a minute or two: tiny model, qqp, few steps and sources")
    args = p.parse_args(argv)
    if args.smoke:
        args.tasks, args.tokenizer, args.bpe_vocab, args.seq_len, args.d_model, args.n_layers = ["qqp"], "bpe", 512, 32, 32, 1
        args.emb_dim, args.batch_size, args.lr, args.train_steps, args.train_pairs = 16, 16, 3e-3, 40, 400
        args.stage1_steps, args.stage2_steps, args.eval_every, args.eval_sources, args.candidates = 6, 4, 3, 12, 2
        args.steps_list, args.refine_list, args.t_init_list, args.t_init_steps = [5, 20], [0, 1], [1000, 1490], 3
        args.time_sources, args.ar_steps = 4, 40
        args.no_progress = True
    args.max_src_len = {"quasar_t": args.seq_len - 2 - max(12, args.seq_len // 4)}
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    work = Path(args.work) / time.strftime("%Y%m%d-%H%M%S")
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
        out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
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
