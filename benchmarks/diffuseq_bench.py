"""DiffuSeq at this machine's scale: train teachers on the offline splits and report DiffuSeq's table.

For each task (the splits of shared/data/README.md, stated in the report):

* paraphrase (``qqp``): train ``qqp/test.jsonl``, evaluate on ``qqp/valid.jsonl``;
* question generation (``quasar_t``): train ``quasar_t/test.jsonl``, evaluate ``quasar_t/valid.jsonl``;
* simplification (``simplification``): train ASSET valid (x10 refs) + TurkCorpus valid (x8),
  evaluate on ASSET test (10 references: multi-reference BLEU and sacreBLEU corpus BLEU);
* numbers to English words (``numbers``, ``benchmarks/number_words.py``, generated from
  seed 0): train 40,000 pairs, evaluate on the test split, choose checkpoints on the valid
  split; the task a teacher learns at this machine's scale (the three above need GPU-scale training).

it trains a ``diffuseq`` teacher through ``dlmkit.recipes.pretrain.train`` and the ``ar`` kind on the
same ``src sep trg eos`` rows (the same ``train``, with ``data.format=seq2seq``) into ``WORK/TASK/{diffuseq,ar}``
(a finished run there is reused, so the DLM-One bench distils the same teachers), then reports:
BLEU vs sampling steps (DDIM respaced, one candidate) with time per sample at ``--eval-batch``;
at the best step count (up to ``--cand-max-steps``) BLEU, ROUGE-L, BERTScore (all-MiniLM-L6-v2,
not the papers' DeBERTa), Dist-1, Self-BLEU and Div-4 over ``--candidates`` seeds, the shares of
empty and one-token-dominated outputs, and MBR over the candidates; a copy-the-source row; an AR
row (greedy, and temperature-1 candidates for diversity/MBR, with the KV cache).

The reported CPU run (numbers to words; the three real tasks need GPU-scale teachers, see
``benchmarks/reproduce.py --paper dlm-one --scale gpu``)::

    python benchmarks/diffuseq_bench.py --tasks numbers --seq-len 32 --bpe-vocab 512 --save-every 1000 \
        --eval-sources 100 --no-progress --work runs/num --train-steps 4000 --ar-steps 4000 \
        --steps-list 10 50 100 500 2000 --candidates 5 --cand-max-steps 100 --out benchmarks/results/diffuseq_numbers.json

Quick version (~10 minutes on 2 CPU cores; figures are a smoke test, not a reproduction)::

    python benchmarks/diffuseq_bench.py --quick --work runs/diffuseq_quick --out benchmarks/results/diffuseq_quick.json

Writes JSON (``--out``) and prints markdown tables. The generated texts behind every metric row
go beside it, to ``OUT`` with ``.outputs.jsonl`` (see ``write_report``), so that
``benchmarks/seq2seq_rescore.py`` can recompute the metric columns after a metric changes,
without the run folders.
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

import torch  # noqa: E402

from dlmkit.engine.config import load_config  # noqa: E402
from dlmkit.data.seq2seq import load_multi_reference, load_pairs  # noqa: E402
from dlmkit.data.tokenizer import TokenizerConfig, build_tokenizer, train_bpe  # noqa: E402
from dlmkit.eval.metrics import seq2seq as M  # noqa: E402
from dlmkit.eval.metrics.degeneracy import degeneracy  # noqa: E402
from dlmkit.eval.metrics.mbr import mbr_decode  # noqa: E402
from dlmkit.hub.model import DlmModel  # noqa: E402
from dlmkit.generate.seq2seq import generate_targets  # noqa: E402
from dlmkit.hub.checkpoint import step_folders  # noqa: E402
from dlmkit.hub.load import load as load_model  # noqa: E402
from dlmkit.recipes.pretrain import train  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import number_words as NW  # noqa: E402

TASKS = ("qqp", "quasar_t", "simplification", "numbers")
DEFAULT_DATA = str(Path(os.environ.get("DLM_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")) / "seq2seq")
SPLITS = {
    "qqp": "train qqp/test.jsonl (2500), eval qqp/valid.jsonl",
    "quasar_t": "train quasar_t/test.jsonl (9999), eval quasar_t/valid.jsonl",
    "simplification": "train ASSET valid x10 + TurkCorpus valid x8 (36k pairs), eval ASSET test (10 refs)",
    "numbers": "numbers to words (benchmarks/number_words.py, seed 0): train 40000, eval test, select on valid",
}


def task_data(root: Path, task: str) -> tuple[list[tuple[str, str]], list[str], list[Any]]:
    """(training pairs, eval sources, eval references: str or list of str per source)."""
    if task == "numbers":
        splits = NW.make_splits(0)
        return splits["train"], [s for s, _ in splits["test"]], [t for _, t in splits["test"]]
    if task in ("qqp", "quasar_t"):
        train_pairs = load_pairs(root / task / "test.jsonl")
        ev = load_pairs(root / task / "valid.jsonl")
        return train_pairs, [s for s, _ in ev], [t for _, t in ev]
    if task == "simplification":
        asset = load_multi_reference(root / "asset" / "asset.valid.orig", str(root / "asset" / "asset.valid.simp.*"))
        pairs = [(s, r) for s, refs in zip(asset.sources, asset.references) for r in refs]
        pairs += load_pairs(root / "turkcorpus" / "valid.tsv")
        test = load_multi_reference(root / "asset" / "asset.test.orig", str(root / "asset" / "asset.test.simp.*"))
        return pairs, test.sources, test.references
    raise SystemExit(f"unknown task {task} (choose from {', '.join(TASKS)})")


def metrics(hyps: list[str], refs: list[Any], *, sources: list[str] | None = None,
            candidates: list[list[str]] | None = None, bertscore: bool = True) -> dict[str, float]:
    """DiffuSeq's metrics; BLEU is the single-reference sentence BLEU, or multi-reference BLEU."""
    out = M.evaluate_seq2seq(hyps, refs, sources=sources, candidates=candidates,
                             bertscore_model=_bertscore_model() if bertscore else None)
    out["BLEU"] = out.get("bleu", out.get("multi_ref_bleu"))
    if isinstance(refs[0], str):  # share of outputs equal to their reference (the numbers task's accuracy)
        out["exact"] = sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / len(refs)
    out.update(degeneracy(hyps))
    return out


def with_outputs(row: dict[str, Any], sources: list[str], refs: list[Any], recover: list[str],
                 candidates: list[list[str]] | None = None, *, mbr: bool = False) -> dict[str, Any]:
    """``row`` with the texts it was computed from (moved to the sidecar file by ``write_report``):
    ``recover`` scored against ``refs``; with ``mbr`` the row is the MBR choice among
    ``candidates``, else ``candidates`` (if any) gave its Self-BLEU and Div-4."""
    row["_outputs"] = {"source": sources, "reference": refs, "recover": recover, "candidates": candidates, "mbr": mbr}
    return row


def write_report(out: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON to ``out`` and every row's ``_outputs`` to ``out`` with
    ``.outputs.jsonl``: one line per row, ``{"paths": [where the row sits in the JSON, as key
    lists], "source", "reference", "recover", "candidates", "mbr"}`` (a row reached by several
    paths, e.g. one table reusing another's row, is stored once)."""
    found: dict[int, dict[str, Any]] = {}

    def walk(node: Any, path: list[Any]) -> Any:
        if isinstance(node, dict):
            if id(node) in found:
                found[id(node)]["paths"].append(path)
            elif "_outputs" in node:
                found[id(node)] = {"paths": [path], **node["_outputs"]}
            return {k: walk(v, [*path, k]) for k, v in node.items() if k != "_outputs"}
        if isinstance(node, list):
            return [walk(v, [*path, i]) for i, v in enumerate(node)]
        return node

    clean = walk(report, [])
    out.write_text(json.dumps(clean, indent=2, default=str) + "\n", encoding="utf-8")
    lines = [json.dumps(v, ensure_ascii=False, default=str) for v in found.values()]
    out.with_suffix(".outputs.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")


def _bertscore_model() -> str | None:
    try:
        from dlmkit.eval.metrics.bertscore import default_model_path

        return default_model_path()
    except Exception:
        return None


def _bleu(hyps: list[str], refs: list[Any]) -> float:
    return M.bleu(hyps, refs) if isinstance(refs[0], str) else M.multi_ref_bleu(hyps, refs)


def make_tokenizer(args: argparse.Namespace, pairs: list[tuple[str, str]], folder: Path) -> tuple[Any, list[str]]:
    """The task's tokenizer (saved to ``folder``) and the config overrides that select it."""
    if args.tokenizer == "bert":
        tok = build_tokenizer(TokenizerConfig(kind="bert"))
        return tok, ["tokenizer.kind=bert"]
    tok = train_bpe([s for s, _ in pairs] + [t for _, t in pairs], args.bpe_vocab)
    tok.save(folder)
    return tok, ["tokenizer.kind=hf", f"tokenizer.path={folder}"]


def common_overrides(args: argparse.Namespace, max_src_len: int) -> list[str]:
    return [
        f"model.n_layers={args.n_layers}", f"model.d_model={args.d_model}", f"model.d_cond={args.d_model}",
        f"model.n_heads={max(2, args.d_model // 32)}", f"model.seq_len={args.seq_len}",
        f"data.max_src_len={max_src_len}", f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
        f"train.warmup={max(1, args.train_steps // 20)}", "train.log_every=25", "train.eval_every=0",
        "train.eval_blocks=128", f"train.save_every={args.save_every}", "train.keep_last=100", "train.sample_steps=10", "data.valid_fraction=0.02",
        f"diffusion.continuous.emb_dim={args.emb_dim}", f"diffusion.continuous.t_sampler={args.t_sampler}",
        f"seed={args.seed}",
    ]


def bleu_sweep(model: Any, tok: Any, sources: list[str], refs: list[Any], steps_list: list[int], *, seed: int,
               batch_size: int, max_src_len: int, log: str | None = None) -> list[dict[str, Any]]:
    """BLEU (one candidate) and seconds per sample at each step count up to the model's ``T``."""
    sweep = []
    for k in [k for k in steps_list if k <= model.method.T]:
        r = generate_targets(model, tok, sources, steps=k, seed=seed, batch_size=batch_size, max_src_len=max_src_len)
        hyps = [c[0] for c in r["candidates"]]
        sweep.append(with_outputs({"steps": k, "BLEU": _bleu(hyps, refs), "s_per_sample": r["seconds_per_sample"]}, sources, refs, hyps))
        if log:
            print(f"[{log}] diffuseq steps {k}: BLEU {sweep[-1]['BLEU']:.4f}, {r['seconds_per_sample'] * 1000:.1f} ms/sample",
                  file=sys.stderr)
    return sweep


def finished(run_dir: Path, steps: int) -> bool:
    """A run in ``run_dir`` that reached ``steps``: reused rather than retrained."""
    newest = step_folders(run_dir)
    return bool(newest) and int(newest[0].name.split("_")[1]) >= steps


def write_jsonl(path: Path, pairs: list[tuple[str, str]]) -> None:
    path.write_text("".join(json.dumps({"src": s, "trg": t}) + "\n" for s, t in pairs), encoding="utf-8")


def task_pairs(args: argparse.Namespace, task: str) -> tuple[list[tuple[str, str]], list[str], list[Any], list[tuple[str, Any]]]:
    """The task's training pairs (capped by ``--train-pairs``), the ``--eval-sources`` reported
    sources and references, and the evaluation pairs after them (held out for model selection)."""
    pairs, sources, refs = task_data(Path(args.data), task)
    if args.train_pairs and len(pairs) > args.train_pairs:
        keep = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(args.seed))[: args.train_pairs].tolist()
        pairs = [pairs[i] for i in sorted(keep)]
    n = args.eval_sources
    rest = NW.make_splits(0)["valid"] if task == "numbers" else list(zip(sources[n:], refs[n:]))
    return pairs, sources[:n], refs[:n], rest


def ensure_teacher(args: argparse.Namespace, task: str, folder: Path, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Train the task's ``diffuseq`` run in ``folder/diffuseq``, or reuse it if it reached ``--train-steps``."""
    run = folder / "diffuseq"
    train_file = folder / "train.jsonl"
    if finished(run, args.train_steps):
        cfg = load_config(str(run / "config.yaml"))
        have = (cfg.model.d_model, cfg.model.n_layers, cfg.model.seq_len, cfg.diffusion.continuous.emb_dim)
        want = (args.d_model, args.n_layers, args.seq_len, args.emb_dim)
        if have != want:
            raise SystemExit(f"{run} holds a different teacher (d_model, n_layers, seq_len, emb_dim = {have}, "
                             f"asked {want}): choose another --work")
        print(f"[{task}] reusing {run}", file=sys.stderr)
        info: dict[str, Any] = {"reused": str(run)}
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl(train_file, pairs)
        _, tok_over = make_tokenizer(args, pairs, folder / "tokenizer")
        over = [*tok_over, *common_overrides(args, args.max_src_len.get(task, 0)), f"data.train={train_file}",
                f"train.steps={args.train_steps}", f"out_dir={run}"]
        print(f"[{task}] training diffuseq: {len(pairs)} pairs, {args.train_steps} steps", file=sys.stderr)
        res = train(load_config("diffuseq-tiny", over), progress=not args.no_progress)
        info = {"seconds": res.seconds, "final_loss": res.final_loss}
    return {"run": str(run), "steps": args.train_steps, **info,
            "data": json.loads((run / "seq2seq_data.json").read_text())}


def ensure_ar(args: argparse.Namespace, task: str, folder: Path) -> tuple[DlmModel, dict[str, Any]]:
    """The ``ar`` kind trained by the library's ``train`` on the teacher's rows (``data.format=seq2seq``),
    tokenizer and optimiser settings, as the run ``folder/ar`` (reused when finished, resumed when cut)."""
    out = folder / "ar"
    if (out / "ar_train.json").is_file():
        print(f"[{task}] reusing {out}", file=sys.stderr)
        model, _ = load_model(out)
        return model, {**json.loads((out / "ar_train.json").read_text()), "reused": str(out)}
    print(f"[{task}] training ar: {args.ar_steps} steps", file=sys.stderr)
    cfg = load_config(str(folder / "diffuseq" / "config.yaml"),
                      ["model.kind=ar", "data.format=seq2seq", "data.valid_fraction=0", f"train.steps={args.ar_steps}",
                       f"out_dir={out}", f"seed={args.seed}"])
    res = train(cfg, resume=(out / "config.yaml").is_file(), progress=not args.no_progress)
    model, _ = load_model(out)
    info = {"steps": args.ar_steps, "seconds": res.seconds}
    (out / "ar_train.json").write_text(json.dumps(info) + "\n", encoding="utf-8")  # written last: marks it complete
    return model, info


def run_task(args: argparse.Namespace, task: str, work: Path) -> dict[str, Any]:
    pairs, sources, refs, _ = task_pairs(args, task)
    folder = work / task
    max_src = args.max_src_len.get(task, 0)
    teacher_info = ensure_teacher(args, task, folder, pairs)
    report: dict[str, Any] = {"task": task, "splits": SPLITS[task], "n_train_pairs": len(pairs),
                              "n_eval_sources": len(sources), "diffuseq_train": teacher_info}
    model, mtok = load_model(folder / "diffuseq")
    kw = dict(batch_size=args.eval_batch, max_src_len=max_src)

    # BLEU and time per sample vs steps (one candidate)
    sweep = bleu_sweep(model, mtok, sources, refs, args.steps_list, seed=args.seed, log=task, **kw)
    report["bleu_vs_steps"] = sweep
    report["best_steps"] = max(sweep, key=lambda s: s["BLEU"])["steps"]
    affordable = [s for s in sweep if s["steps"] <= args.cand_max_steps] or sweep[:1]
    best = report["candidate_steps"] = max(affordable, key=lambda s: s["BLEU"])["steps"]

    # at the best (affordable) step count: candidates (seeds) for diversity and MBR
    r = generate_targets(model, mtok, sources, steps=best, candidates=args.candidates, seed=args.seed, **kw)
    cands = r["candidates"]
    rows = []
    m = metrics([c[0] for c in cands], refs, sources=sources, candidates=cands, bertscore=args.bertscore)
    rows.append(with_outputs({"system": "DiffuSeq", "steps": best, **m, "s_per_sample": r["seconds_per_sample"]},
                             sources, refs, [c[0] for c in cands], cands))
    chosen = mbr_decode(cands)
    m = metrics(chosen, refs, sources=sources, bertscore=args.bertscore)
    rows.append(with_outputs({"system": f"DiffuSeq MBR-{args.candidates}", "steps": best, **m,
                              "s_per_sample": r["seconds_per_sample"] * args.candidates}, sources, refs, chosen, cands, mbr=True))
    rows.append({"system": "copy source", "steps": 0, **metrics(list(sources), refs, sources=sources, bertscore=args.bertscore)})

    # AR baseline on the same rows
    ar, report["ar_train"] = ensure_ar(args, task, folder)
    g1 = generate_targets(ar, mtok, sources, seed=args.seed, **kw)
    gk = generate_targets(ar, mtok, sources, candidates=args.candidates, seed=args.seed, **kw)
    greedy = [c[0] for c in g1["candidates"]]
    m = metrics(greedy, refs, sources=sources, candidates=gk["candidates"], bertscore=args.bertscore)
    rows.append(with_outputs({"system": "AR greedy (div: T=1 samples)", "steps": g1["nfe"], **m, "s_per_sample": g1["seconds_per_sample"]},
                             sources, refs, greedy, gk["candidates"]))
    chosen = mbr_decode(gk["candidates"])
    m = metrics(chosen, refs, sources=sources, bertscore=args.bertscore)
    rows.append(with_outputs({"system": f"AR MBR-{args.candidates} (T=1)", "steps": gk["nfe"], **m,
                              "s_per_sample": gk["seconds_per_sample"] * args.candidates}, sources, refs, chosen, gk["candidates"], mbr=True))
    report["rows"] = rows
    report["examples"] = [{"source": s, "reference": rf, "diffuseq": c[0], "ar": a[0]}
                          for s, rf, c, a in list(zip(sources, refs, cands, g1["candidates"]))[:3]]
    return report


def render(results: list[dict[str, Any]]) -> str:
    cols = ["BLEU", "exact", "rouge_l", "bertscore_f1", "dist1", "self_bleu", "div4", "empty", "repeat", "hyp_len"]
    out = []
    for rep in results:
        out.append(f"\n### {rep['task']} ({rep['splits']}; {rep['n_train_pairs']} train pairs, {rep['n_eval_sources']} eval sources)\n")
        out.append("| system | steps | " + " | ".join(cols) + " | s/sample |")
        out.append("|" + "---|" * (len(cols) + 3))
        for r in rep["rows"]:
            vals = [f"{r[c]:.4f}" if isinstance(r.get(c), float) else "-" for c in cols]
            sps = f"{r['s_per_sample']:.4f}" if "s_per_sample" in r else "-"
            out.append(f"| {r['system']} | {r['steps']} | " + " | ".join(vals) + f" | {sps} |")
        out.append("\nBLEU vs DDIM steps: " + ", ".join(f"{s['steps']}: {s['BLEU']:.4f} ({s['s_per_sample'] * 1000:.1f} ms/sample)" for s in rep["bleu_vs_steps"]))
    return "\n".join(out)


def add_shared_args(p: argparse.ArgumentParser) -> None:
    """Data, run folders and the teacher / AR model: the same defaults in the DLM-One bench, so
    both benches share (reuse) one set of trained models."""
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--work", default="runs/diffuseq_bench",
                   help="run folders WORK/TASK/{diffuseq,ar}; finished ones are reused, not retrained")
    p.add_argument("--tokenizer", choices=("bpe", "bert"), default="bpe",
                   help="bpe: trained per task (default; fast on a CPU); bert: DiffuSeq's WordPiece (30522 tokens: "
                        "~7x the rounding and clamping cost)")
    p.add_argument("--bpe-vocab", type=int, default=4096)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=3)
    p.add_argument("--emb-dim", type=int, default=128, help="DiffuSeq's embedding width")
    p.add_argument("--t-sampler", default="lossaware", choices=("uniform", "lossaware"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-steps", type=int, default=5000)
    p.add_argument("--ar-steps", type=int, default=None, help="default: --train-steps")
    p.add_argument("--save-every", type=int, default=0, help="keep the teacher's checkpoint every N steps (0: the last only)")
    p.add_argument("--train-pairs", type=int, default=0, help="cap on training pairs (0: all)")
    p.add_argument("--eval-sources", type=int, default=64)
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--no-bertscore", dest="bertscore", action="store_false")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--seed", type=int, default=0)


def max_src_len(task: str, seq_len: int) -> int:
    """Source budget: question generation has long passages and short questions (the target keeps
    a quarter, at least 12 tokens); 0 (half each) for the others."""
    return seq_len - 2 - max(12, seq_len // 4) if task == "quasar_t" else 0


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    args.ar_steps = args.ar_steps or args.train_steps
    args.max_src_len = {t: max_src_len(t, args.seq_len) for t in TASKS}
    return args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_shared_args(p)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--out", default="benchmarks/results/diffuseq.json")
    p.add_argument("--steps-list", type=int, nargs="+", default=[10, 50, 100, 500, 1000, 2000])
    p.add_argument("--candidates", type=int, default=10)
    p.add_argument("--cand-max-steps", type=int, default=2000,
                   help="the candidates (diversity, MBR) use the best sweep step count up to this (cost on a CPU)")
    p.add_argument("--quick", action="store_true", help="~10 minutes on 2 CPU cores: small model, few steps and sources")
    args = p.parse_args(argv)
    if args.quick:
        args.bpe_vocab, args.seq_len, args.d_model, args.n_layers = 2048, 48, 96, 2
        args.batch_size, args.lr, args.train_steps, args.train_pairs = 32, 2e-3, 300, 5000
        args.eval_sources, args.steps_list, args.candidates = 30, [10, 50, 200], 4
        args.no_progress = True
    return finish_args(args)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    work = Path(args.work)
    start = time.perf_counter()
    settings = {k: v for k, v in vars(args).items() if k not in ("max_src_len",)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for task in args.tasks:  # the JSON is rewritten after every task: a long run keeps what it has
        results.append(run_task(args, task, work))
        report = {"benchmark": "diffuseq", "settings": settings, "max_src_len": args.max_src_len,
                  "device": "cpu", "threads": torch.get_num_threads(), "seconds": time.perf_counter() - start,
                  "complete": len(results) == len(args.tasks),
                  "note": "BERTScore uses all-MiniLM-L6-v2 (layer 6), not the papers' deberta-xlarge-mnli; "
                          "BLEU is DiffuSeq's mean sentence BLEU, standard argument order (multi-reference BLEU for ASSET); "
                          "times are wall clock on a shared CPU.",
                  "tasks": results}
        write_report(out, report)
    print(render(results))
    print(f"\nwrote {out} in {report['seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
