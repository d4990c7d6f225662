"""One command per paper: run its whole table set at this machine's scale or a GPU's.

    python benchmarks/reproduce.py --paper sedd-eval|dlm-one|tcs --scale cpu|gpu [--dry-run]

Each (paper, scale) is a plan of steps, each one call of an existing benchmark script
(``discrete_lm.py``, ``eval_suite.py``, ``latency_grid.py``, ``tcs_bench.py``,
``diffuseq_bench.py``, ``dlm_one_bench.py``) or of ``dlm``, with the time it is expected to
take. The plan and its total time are printed before anything starts (``--dry-run`` stops
there); then the steps run in order (a step whose outputs exist is skipped unless ``--force``),
and ``--out-dir`` receives ``reproduce.json`` (the plan, each step's wall time and exit status,
and the measured figures beside the paper's) and ``report.md`` with the tables and the plots the
steps wrote, plus ``paper_vs_measured.png``.

Scales:

* ``cpu``: the settings whose figures are in the README (2 CPU cores, about an hour per model);
  the papers' numbers are not shown beside them, because the models are 10^3-10^5 times smaller.
* ``gpu``: the papers' settings where the data exist offline: the released checkpoints for the
  evaluation paper (SEDD small against GPT-2 small: WikiText-2 / PTB, and LAMBADA when given as a
  file with ``--lambada``), DiffuSeq-size teachers (12 x 768, BERT tokenizer, 128 positions) on
  QQP and Quasar-T for DLM-One, SmolLM2-135M as the TCS teacher. The expected numbers (``PAPER``)
  are copied from the papers' tables; the TCS paper is an abstract without numbers. The offline
  QQP / Quasar-T splits train on the papers' test files (2500 / 9999 pairs, not 145k / 117k), so
  the measured teachers are expected below the papers'.

The expected times of the GPU plans are estimates for one recent GPU, not measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
PAPERS = ("sedd-eval", "dlm-one", "tcs")
SCALES = ("cpu", "gpu")

# The papers' figures shown beside the measured ones at the GPU scale.
PAPER: dict[str, dict[str, float]] = {
    # Deschenaux & Gulcehre 2024, Table 1: zero-shot perplexity (SEDD: upper bounds)
    "sedd-eval": {"gpt2 wikitext2 ppl": 39.576, "gpt2 ptb ppl": 129.977, "gpt2 lambada ppl": 44.663,
                  "sedd-small wikitext2 ppl (<=)": 38.941, "sedd-small ptb ppl (<=)": 110.97,
                  "sedd-small lambada ppl (<=)": 51.146},
    # Chen, Zhang, Zhou 2025 (DLM-One), Table 1 (teacher at 2000 steps, one-step student) and Table 2
    "dlm-one": {"qqp teacher BLEU": 0.1829, "qqp teacher ROUGE-L": 0.5299, "qqp student BLEU": 0.1788,
                "qqp student ROUGE-L": 0.5265, "quasar_t teacher BLEU": 0.1512, "quasar_t teacher ROUGE-L": 0.3468,
                "quasar_t student BLEU": 0.1512, "quasar_t student ROUGE-L": 0.3257,
                "speed-up 1 step vs 2000 steps": 14.94 / 0.03},
    "tcs": {},
}


@dataclass
class Step:
    """One command of a plan: ``argv`` run from the repository root, ``seconds`` its expected
    wall time, ``outputs`` the files it writes (all present: the step is done), ``stdout`` a file
    that receives its standard output (for ``dlm ... --json``)."""

    name: str
    argv: list[str]
    seconds: float
    outputs: list[str]
    stdout: str | None = None
    note: str = ""
    copy_first: tuple[str, str] | None = None  # a folder copied to a new place first (a shared tokenizer)
    result: dict[str, Any] = field(default_factory=dict)

    def command(self) -> str:
        cmd = shlex.join(["python", *self.argv[1:]] if self.argv[0] == sys.executable else self.argv)
        if self.copy_first:
            cmd = f"cp -r {shlex.join(self.copy_first)} && {cmd}"
        return f"{cmd} > {shlex.quote(self.stdout)}" if self.stdout else cmd


def py(script: str, *args: Any) -> list[str]:
    return [sys.executable, str(Path("benchmarks") / script), *map(str, args)]


def dlm(*args: Any) -> list[str]:
    return [sys.executable, "-m", "dlmkit.cli", *map(str, args)]


def plan(paper: str, scale: str, out: Path, work: Path, ckpt: Path, data: Path, lambada: str | None) -> list[Step]:
    """The steps of ``paper`` at ``scale`` (outputs under ``out``, run folders under ``work``)."""
    lm_runs = work / "lm_byte"
    discrete = Step(
        "discrete_lm (Table 1 analogue: ar, mdlm, sedd_absorb, sedd_uniform, bytes, 1200 x 32 x 64 tokens)",
        py("discrete_lm.py", "--data", data / "lm", "--runs", lm_runs, "--kinds", "ar", "mdlm", "sedd_absorb", "sedd_uniform",
           "--set", *LM_BYTE, "--steps", 1200, "--batch", 32, "--jobs", 3, "--eval-sequences", 64, "--n-samples", 8,
           "--repeats", 2, "--out", out / "discrete_lm_byte.json", "--plot", out / "discrete_lm_byte.png"),
        90 * 60, [str(out / "discrete_lm_byte.json")])
    if (paper, scale) == ("sedd-eval", "cpu"):
        return [
            discrete,
            Step("eval_suite (Tables 1-5 analogues, judge SmolLM2-135M)",
                 py("eval_suite.py", "--size", "cpu", "--ar", lm_runs / "ar", "--mdlm", lm_runs / "mdlm", "--sedd",
                    lm_runs / "sedd_absorb", "--judge", "smollm2", "--skip", "latency", "--out-dir", out / "eval_suite"),
                 2400, [str(out / "eval_suite" / "results.json")]),
            Step("latency_grid (Figure 1 analogue)",
                 py("latency_grid.py", "--max-timed-steps", 4, "--repeats", 1, "--warmup", 1, "--budget-s", 60,
                    "--skip-cells", "1024x32", "--out", out / "latency_grid.json", "--plot", out / "latency_grid.png"),
                 150, [str(out / "latency_grid.json")]),
        ]
    if (paper, scale) == ("sedd-eval", "gpu"):
        steps = [Step("eval_suite on the released checkpoints (Tables 1-5, Figure 1; judge GPT-2 large)",
                      py("eval_suite.py", "--size", "full", "--ar", ckpt / "gpt2", "--sedd", ckpt / "sedd-small",
                         "--mdlm", ckpt / "mdlm-owt", "--judge", ckpt / "gpt2-large", "--device", "cuda",
                         "--out-dir", out / "eval_suite"),
                      3 * 3600, [str(out / "eval_suite" / "results.json")],
                      note="needs ckpt/{gpt2,sedd-small,mdlm-owt,gpt2-large} (see the README's 'Released models')")]
        if lambada:
            steps.append(Step("LAMBADA perplexity (Table 1 column)",
                              dlm("eval", "ppl", ckpt / "sedd-small", ckpt / "gpt2", "--data", lambada, "--n-samples", 32,
                                  "--batch-size", 8, "--device", "cuda", "--json"),
                              1200, [str(out / "lambada.json")], stdout=str(out / "lambada.json")))
        return steps
    if (paper, scale) == ("dlm-one", "cpu"):
        common = ["--tasks", "numbers", "--seq-len", 32, "--bpe-vocab", 512, "--save-every", 2000, "--eval-sources", 100,
                  "--no-progress", "--work", work / "num10k", "--train-steps", 10000, "--ar-steps", 4000]
        dq = out / "diffuseq_numbers_10k.json"
        return [
            Step("diffuseq_bench numbers (teacher, AR, BLEU vs steps)",
                 py("diffuseq_bench.py", *common, "--steps-list", 10, 100, 500, 2000, "--candidates", 5,
                    "--cand-max-steps", 100, "--out", dq), 1800, [str(dq)]),
            Step("dlm_one_bench numbers (Tables 1-4 and the t_init table, Figure 3)",
                 py("dlm_one_bench.py", *common, "--diffuseq-json", dq, *DLM_ONE_CPU, "--out", out / "dlm_one_numbers_10k.json"),
                 1800, [str(out / "dlm_one_numbers_10k.json")]),
        ]
    if (paper, scale) == ("dlm-one", "gpu"):
        common = ["--tasks", "qqp", "quasar_t", "--tokenizer", "bert", "--seq-len", 128, "--d-model", 768, "--n-layers", 12,
                  "--emb-dim", 128, "--batch-size", 256, "--lr", 1e-4, "--train-steps", 50000, "--ar-steps", 20000,
                  "--eval-sources", 1000, "--eval-batch", 256, "--no-progress", "--work", work / "s2s_gpu"]
        dq = out / "diffuseq_gpu.json"
        return [
            Step("diffuseq_bench qqp + quasar_t, DiffuSeq-size teachers (BLEU vs steps, MBR-10)",
                 py("diffuseq_bench.py", *common, "--candidates", 10, "--out", dq), 8 * 3600, [str(dq)]),
            Step("dlm_one_bench qqp + quasar_t (Table 5 defaults, 50k distillation steps)",
                 py("dlm_one_bench.py", *common, "--diffuseq-json", dq, "--stage1-steps", 40000, "--stage2-steps", 10000,
                    "--eval-every", 200, "--t-init-steps", 2000, "--time-sources", 100, "--out", out / "dlm_one_gpu.json"),
                 6 * 3600, [str(out / "dlm_one_gpu.json")]),
        ]
    if (paper, scale) == ("tcs", "cpu"):
        held = lm_runs / "data" / "heldout_by_corpus"
        tcs = ["tcs_bench.py", "--data", lm_runs / "data" / "train", "--valid", *(held / c for c in CORPORA), "--teachers",
               "ar", "--ar-teacher", lm_runs / "ar", "--alpha", 0.5, "--size", "quick", "--batch", 32, "--set", *LM_BYTE,
               "--work", work / "tcs_byte"]
        stages = ["--stages", 200, 400, 800]
        judge = work / "ar_judge"
        return [
            discrete,
            Step("tcs_bench data-only student (judges: the teacher and SmolLM2)",
                 py(*tcs, *stages, "--judge", "smollm2", "--estimators", "--out", out / "tcs_byte_data.json"),
                 50 * 60, [str(out / "tcs_byte_data.json")]),
            Step("tcs_bench TCS-left student",
                 py(*tcs, *stages, "--estimators", "left", "--skip-data", "--out", out / "tcs_byte_left.json"),
                 60 * 60, [str(out / "tcs_byte_left.json")]),
            Step("an independent AR judge (same setting and data, seed 1, the teacher's tokenizer)",
                 dlm("train", "tiny", "model.kind=ar", *LM_BYTE, "train.batch_size=32", "train.steps=1200", "seed=1",
                     f"data.train={lm_runs / 'data' / 'train'}", f"data.valid={lm_runs / 'data' / 'heldout'}", f"out_dir={judge}"),
                 25 * 60, [str(judge / "checkpoints" / "best" / "config.json")],
                 copy_first=(str(lm_runs / "ar" / "tokenizer"), str(judge / "tokenizer"))),
            Step("tcs_bench rejudge: the same samples scored by the independent AR judge",
                 py(*tcs, "--estimators", "left", "--rejudge", "--stages", 800, "--judge", judge,
                    "--out", out / "tcs_byte_rejudge_arjudge.json"),
                 10 * 60, [str(out / "tcs_byte_rejudge_arjudge.json")]),
            Step("tcs_bench rejudge: the same samples scored by SmolLM2-135M",
                 py(*tcs, "--estimators", "left", "--rejudge", "--stages", 800, "--judge", "smollm2",
                    "--out", out / "tcs_byte_rejudge_smollm2.json"),
                 15 * 60, [str(out / "tcs_byte_rejudge_smollm2.json")]),
        ]
    if (paper, scale) == ("tcs", "gpu"):
        lm = data / "lm"
        return [Step("tcs_bench (SmolLM2-135M and a dlmkit AR teacher, all three estimators, against data-only)",
                     py("tcs_bench.py", "--data", *sorted(str(p) for p in [lm / "kjv.txt", lm / "fortunes.txt",
                                                                           lm / "tinystories" / "valid_first1000.txt"]),
                        "--valid", lm / "wikitext2" / "raw.test.txt", "--teachers", "ar", "smollm2", "--estimators", "left",
                        "topk", "exact", "--alpha", 0.5, "--size", "full", "--work", work / "tcs_gpu", "--out", out / "tcs.json"),
                     6 * 3600, [str(out / "tcs.json")])]
    raise SystemExit(f"error: no plan for --paper {paper} --scale {scale}")


# the byte-level language-modelling setting where every discrete kind learns context (README: Benchmarks)
LM_BYTE = ["tokenizer.vocab_size=260", "model.seq_len=64", "model.d_model=128", "model.d_cond=64"]
CORPORA = ("austen", "kjv", "fortunes", "tinystories")

# the DLM-One distillation at the CPU scale: Table 5's defaults with learning rates x10 (900 steps, not 50k)
DLM_ONE_CPU = ["--stage1-steps", 600, "--stage2-steps", 300, "--eval-every", 100, "--t-init-list", 1000, 1490, 1900,
               "--t-init-steps", 100, "--candidates", 5, "--set", "stage1.lr_theta=1e-4", "--set", "stage1.lr_psi=3e-4",
               "--set", "stage2.lr_theta=1e-4", "--set", "stage2.lr_psi=1e-4"]


def hms(seconds: float) -> str:
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def render_plan(paper: str, scale: str, steps: list[Step]) -> str:
    lines = [f"plan: --paper {paper} --scale {scale}, {len(steps)} steps, expected {hms(sum(s.seconds for s in steps))}"
             + (" (GPU times are estimates)" if scale == "gpu" else "")]
    for i, s in enumerate(steps, 1):
        lines.append(f"  {i}. {s.name} (~{hms(s.seconds)}){': ' + s.note if s.note else ''}\n     {s.command()}")
    return "\n".join(lines)


def run_step(step: Step, force: bool) -> None:
    """Run ``step`` from the repository root, recording its wall time and exit status."""
    if not force and step.outputs and all(Path(o).is_file() for o in step.outputs):
        step.result = {"status": "skipped (outputs exist)", "seconds": 0.0}
        return
    for o in step.outputs:
        Path(o).parent.mkdir(parents=True, exist_ok=True)
    if step.copy_first and not Path(step.copy_first[1]).exists():
        shutil.copytree(*step.copy_first)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    if step.stdout:
        tmp = Path(step.stdout).with_suffix(".partial")
        with tmp.open("w", encoding="utf-8") as fh:
            rc = subprocess.call(step.argv, cwd=REPO, env=env, stdout=fh)
        if rc == 0:
            os.replace(tmp, step.stdout)
    else:
        rc = subprocess.call(step.argv, cwd=REPO, env=env)
    step.result = {"status": "ok" if rc == 0 else f"failed (exit {rc})", "seconds": time.perf_counter() - t0}


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _dataset(path: str) -> str:
    """The paper's column name of a perplexity data file."""
    low = path.lower()
    return next((name for name in ("wikitext2", "ptb", "lambada") if name in low.replace("-", "")), Path(path).name)


def measured(paper: str, out: Path) -> dict[str, float]:
    """The measured figures under the keys of ``PAPER[paper]`` (and more), from the steps' JSON."""
    got: dict[str, float] = {}
    if paper == "sedd-eval":
        names = {"ar": "gpt2", "sedd_absorb": "sedd-small", "mdlm": "mdlm-owt"}
        rows = ((_load(out / "eval_suite" / "results.json") or {}).get("ppl") or []) + (_load(out / "lambada.json") or [])
        for r in rows if isinstance(rows, list) else []:
            ds = _dataset(str(r.get("data", "")))
            model = names.get(r.get("kind", ""), Path(str(r.get("model", ""))).name)
            got[f"{model} {ds} ppl" + (" (<=)" if r.get("bound") else "")] = float(r["ppl"])
    elif paper == "dlm-one":
        for name in ("diffuseq_gpu.json", "diffuseq_numbers.json"):
            for t in (_load(out / name) or {}).get("tasks", []):
                row = next((r for r in t["rows"] if r["system"] == "DiffuSeq"), None)
                best = max(t["bleu_vs_steps"], key=lambda x: x["BLEU"])
                got[f"{t['task']} teacher BLEU"] = best["BLEU"]
                if row:
                    got[f"{t['task']} teacher ROUGE-L"] = row["rouge_l"]
                ar = next((r for r in t["rows"] if r["system"].startswith("AR greedy")), None)
                if ar:
                    got[f"{t['task']} AR BLEU"] = ar["BLEU"]
        for name in ("dlm_one_gpu.json", "dlm_one_numbers.json"):
            for t in (_load(out / name) or {}).get("tasks", []):
                st = t["table1"]["student (final)"]
                got[f"{t['task']} student BLEU"], got[f"{t['task']} student ROUGE-L"] = st["BLEU"], st["rouge_l"]
                got["speed-up 1 step vs 2000 steps"] = t["targets"]["speedup_vs_teacher_T"]
    elif paper == "tcs":
        for r in (_load(out / "tcs.json") or {}).get("rows", []):
            got[f"{r['teacher']} {r['variant']} step {r['steps']} val ppl (<=)"] = r["val_elbo_ppl_bound"]
            got[f"{r['teacher']} {r['variant']} step {r['steps']} gen ppl"] = r["gen_ppl"]
    return got


def plot_comparison(expected: dict[str, float], got: dict[str, float], path: Path) -> str | None:
    """Bars of paper vs measured for the keys both have (None without matplotlib or shared keys)."""
    keys = [k for k in expected if k in got]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(keys)), 4))
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [expected[k] for k in keys], 0.4, label="paper")
    ax.bar([x + 0.2 for x in xs], [got[k] for k in keys], 0.4, label="measured")
    ax.set_xticks(list(xs), keys, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def report(paper: str, scale: str, steps: list[Step], out: Path) -> str:
    """Markdown: the plan with times and status, paper vs measured, and every plot the steps wrote."""
    lines = [f"# reproduce.py --paper {paper} --scale {scale}", "", "| step | command | expected | took | status |",
             "|---|---|---:|---:|---|"]
    for s in steps:
        took = hms(s.result["seconds"]) if s.result.get("seconds") else "-"
        lines.append(f"| {s.name} | `{s.command()}` | {hms(s.seconds)} | {took} | {s.result.get('status', 'not run')} |")
    got = measured(paper, out)
    expected = PAPER[paper] if scale == "gpu" else {}
    lines += ["", "## Figures", "", "| figure | paper | measured |", "|---|---:|---:|"]
    for k in sorted(set(expected) | set(got)):
        lines.append(f"| {k} | {_num(expected.get(k))} | {_num(got.get(k))} |")
    if scale == "cpu":
        lines += ["", "CPU scale: the papers' numbers are not comparable (models 10^3-10^5 times smaller); see the README."]
    if paper == "tcs":
        lines += ["", "The TCS paper is an abstract without tables: no expected numbers."]
    plot = plot_comparison(expected, got, out / "paper_vs_measured.png") if expected else None
    pngs = ([plot] if plot else []) + sorted(str(p.relative_to(out)) for p in out.rglob("*.png") if p.name != "paper_vs_measured.png")
    lines += [""] + [f"![{p}]({p})" for p in pngs]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--paper", required=True, choices=PAPERS)
    p.add_argument("--scale", required=True, choices=SCALES)
    p.add_argument("--out-dir", default=None, help="default: benchmarks/results/reproduce/PAPER_SCALE")
    p.add_argument("--work", default="runs/reproduce", help="run folders (trained models)")
    p.add_argument("--ckpt", default="ckpt", help="released checkpoints (gpu scale of sedd-eval): ckpt/{gpt2,sedd-small,...}")
    p.add_argument("--data", default=os.environ.get("DLM_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    p.add_argument("--lambada", default=None, help="LAMBADA test text (the paper's third Table 1 column), if you have it")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its expected time, run nothing")
    p.add_argument("--force", action="store_true", help="rerun steps whose outputs exist")
    a = p.parse_args(argv)
    out = Path(a.out_dir or REPO / "benchmarks" / "results" / "reproduce" / f"{a.paper}_{a.scale}").resolve()
    steps = plan(a.paper, a.scale, out, Path(a.work), Path(a.ckpt), Path(a.data), a.lambada)
    print(render_plan(a.paper, a.scale, steps), flush=True)
    if a.dry_run:
        return 0
    if a.scale == "gpu" and shutil.which("nvidia-smi") is None:
        print("warning: no nvidia-smi here; the gpu plan expects a CUDA device", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for i, s in enumerate(steps, 1):
        print(f"[reproduce] step {i}/{len(steps)}: {s.name}", file=sys.stderr, flush=True)
        run_step(s, a.force)
        status = status or int(not s.result["status"].startswith(("ok", "skipped")))
        summary = {"paper": a.paper, "scale": a.scale, "steps": [asdict(x) for x in steps],
                   "expected": PAPER[a.paper] if a.scale == "gpu" else {}, "measured": measured(a.paper, out)}
        (out / "reproduce.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        (out / "report.md").write_text(report(a.paper, a.scale, steps, out), encoding="utf-8")
        if status:
            print(f"error: step {i} {s.result['status']}: {s.command()}", file=sys.stderr)
            break
    print(f"wrote {out / 'reproduce.json'} and {out / 'report.md'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
