"""Block diffusion (bd3lm) benchmark: the bound against block size at equal tokens, beside AR and
MDLM, and the sampler's latency with and without the KV cache of the finished blocks.

``--part bound``: the byte-level LM setting of the README (Benchmarks, "Diffusion against AR at equal training tokens": byte-level tokens, L = 64,
4 x 128 tiny backbone, batch 32, the Austen/KJV/fortunes/TinyStories split of
``discrete_lm.split_corpus``) at ``--steps`` steps for every model (equal training tokens):
``ar``, ``mdlm`` and ``bd3lm`` at block sizes 1, 4, 16, 64 (= L), all on one shared tokenizer.
Each is scored on the first ``--eval-blocks`` held-out blocks by ``perplexity_table`` (AR exact;
the diffusion bounds with the ``count`` estimator, the noise level integrated exactly).

``--part latency``: random-weight ``tiny``-preset models (4 x 256), one thread, for every
(``--lengths`` x ``--batches``) cell: AR with its KV cache, MDLM with the cached masked sampler
(``length`` steps), bd3lm (block ``--block``, ``--steps-per-block`` steps, cached masked sampler
within the block) with the KV cache of the finished blocks and without it; medians of interleaved
repeats, reported as ratios. ``--skip-uncached``, ``--once`` and ``--scale-mdlm`` keep the costly
cells within budget (MDLM's calls all have one shape, so it alone may be timed at few steps and
scaled to its full run's network calls, counted on a narrow proxy with the same draws).

``--part gen``: generative perplexity (judge: the trained ``ar`` run) and unigram entropy of
``--n-gen`` unconditional samples against steps, bd3lm B = 1, 4, 16 (steps per block) beside MDLM
and AR (rows in ``GEN_ROWS``); needs the trained runs of ``--part bound``.

``--part clip``: the data-driven clipped schedule: for the unclipped B = 4 and B = 16 runs, the
variance of the per-token training loss under each mask-rate interval of a grid (``--draws``
draws on ``--eval-blocks`` held-out blocks); the paper trains with the lowest.

Writes ``benchmarks/results/block_diffusion_{bound,latency,clip,gen}.json``. Run with
``OMP_NUM_THREADS=1 nice -n 5 python benchmarks/block_diffusion.py --part ...``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import multiprocessing as mp

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from discrete_lm import split_corpus  # noqa: E402

from dlmkit.data.blocks import PackedBlocks  # noqa: E402
from dlmkit.data.corpus import iter_documents, tokenize_corpus  # noqa: E402
from dlmkit.data.tokenizer import build_tokenizer  # noqa: E402
from dlmkit.engine.config import load_config  # noqa: E402
from dlmkit.eval.judges import load_judge  # noqa: E402
from dlmkit.eval.tasks.genppl import generative_perplexity  # noqa: E402
from dlmkit.eval.tasks.latency import random_model, timed  # noqa: E402
from dlmkit.eval.tasks.perplexity import perplexity_table  # noqa: E402
from dlmkit.generate import Unconditional, generate  # noqa: E402
from dlmkit.hub.load import load as load_model  # noqa: E402
from dlmkit.hub.model import DlmModel  # noqa: E402
from dlmkit.methods.base import Specials  # noqa: E402
from dlmkit.networks.transformer import BackboneConfig  # noqa: E402
from dlmkit.io import write_json  # noqa: E402
from dlmkit.recipes.pretrain import train  # noqa: E402
from dlmkit.runtime import default_cache_dir  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SETTING = ["tokenizer.vocab_size=260", "model.seq_len=64", "model.d_model=128", "model.d_cond=64", "train.batch_size=32"]
MODELS = {"ar": ["model.kind=ar"], "mdlm": ["model.kind=mdlm"],
          **{f"bd3lm_b{b}": ["model.kind=bd3lm", f"diffusion.block_size={b}"] for b in (1, 4, 16, 64)},
          # the clipped schedule: B = 1 always masked (the AR loss, as bd3lms trains B = 1); B = 4, 16 in [0.3, 0.8]
          "bd3lm_b1_clip": ["model.kind=bd3lm", "diffusion.block_size=1", "diffusion.clip_min=0.999", "diffusion.clip_max=1.0"],
          **{f"bd3lm_b{b}_clip": ["model.kind=bd3lm", f"diffusion.block_size={b}", "diffusion.clip_min=0.3",
                                  "diffusion.clip_max=0.8"] for b in (4, 16)}}


def config(name: str, args: argparse.Namespace, train_dir: Path, held_dir: Path):
    return load_config("tiny", [*SETTING, *MODELS[name], f"train.steps={args.steps}", f"train.eval_every={args.steps}",
                                f"train.save_every={args.steps}", f"data.train={train_dir}", f"data.valid={held_dir}",
                                f"out_dir={args.runs / name}"])


def train_one(name: str, args: argparse.Namespace, train_dir: Path, held_dir: Path) -> dict:
    torch.set_num_threads(1)
    start = time.perf_counter()
    result = train(config(name, args, train_dir, held_dir), progress=False)
    return {"train_seconds": time.perf_counter() - start, "val_loss": result.val_loss}


def bound_part(args: argparse.Namespace) -> dict:
    train_dir, held_dir = split_corpus(args.data, args.runs / "data", 0.05)
    shared = args.runs / "tokenizer"
    if not (shared / "tokenizer.json").is_file():
        cfg = config("ar", args, train_dir, held_dir)
        build_tokenizer(cfg.tokenizer, iter_documents(cfg.data.train)).save(shared)
    todo = args.models or list(MODELS)
    for name in todo:
        if (args.runs / name).exists():
            shutil.rmtree(args.runs / name)
        shutil.copytree(shared, args.runs / name / "tokenizer")
    out = args.out or RESULTS / "block_diffusion_bound.json"
    runs = json.loads(out.read_text())["runs"] if out.is_file() and args.models else {}
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {name: pool.submit(train_one, name, args, train_dir, held_dir) for name in todo}
        runs.update({name: f.result() for name, f in futures.items()})
    torch.set_num_threads(1)
    for name in todo:
        row = perplexity_table([str(args.runs / name)], [str(held_dir)], estimator="count", n_samples=args.n_samples,
                               max_sequences=args.eval_blocks, batch_size=16, progress=False)[0]
        runs[name].update({k: row[k] for k in ("nll_per_token", "nll_stderr", "nll_stderr_mc", "ppl", "ppl_seq_mean", "bound", "sequences")})
    return {"setting": SETTING, "models": {name: MODELS[name] for name in runs}, "steps": args.steps, "tokens": args.steps * 32 * 64, "estimator": "count",
            "n_samples": args.n_samples, "eval_blocks": args.eval_blocks, "runs": runs}


def _proxy(model: torch.nn.Module) -> torch.nn.Module:
    """A one-layer, width-32 copy of ``model``'s kind, vocabulary and context: the masked samplers'
    unmasking draws do not depend on the network, so it makes the same network calls (nfe) for
    the same seed at a fraction of the cost."""
    cfg = model.config
    backbone = BackboneConfig(**{**cfg["backbone"], "n_layers": 1, "d_model": 32, "n_heads": 1, "d_cond": 16})
    return DlmModel.build(cfg["kind"], backbone, Specials(**cfg["specials"]), cfg["options"]).eval()


def latency_part(args: argparse.Namespace) -> dict:
    """Seconds per call of ``generate`` for every (length, batch) cell: AR with its KV cache, MDLM with
    the cached masked sampler (``length`` steps, one token a step on average, as bd3lm's
    ``block`` steps a block), bd3lm with and without the KV cache of the finished blocks. Medians of
    interleaved repeats per cell; the JSON is rewritten after every cell."""
    torch.set_num_threads(1)
    dev = torch.device("cpu")
    top = max(args.lengths)
    bd3 = random_model("bd3lm", "tiny", top, dev)
    bd3.method.block_size = args.block
    mdlm, ar = random_model("mdlm", "tiny", top, dev), random_model("ar", "tiny", top, dev)
    out = args.out or RESULTS / "block_diffusion_latency.json"
    result = {"preset": "tiny (random weights)", "block_size": args.block, "steps_per_block": args.steps_per_block,
              "mdlm_steps": "length (one token a step on average)", "threads": 1, "cells": []}
    for length in args.lengths:
        for batch in args.batches:
            repeats = 1 if (length, batch) in args.once else args.repeats
            cases = {"ar_kv_cache": (ar, 0, {}), "bd3lm_cached": (bd3, args.steps_per_block, {"use_cache": True})}
            if (length, batch) not in args.skip_uncached:
                cases["bd3lm_uncached"] = (bd3, args.steps_per_block, {"use_cache": False})
            scaled = (length, batch) in args.scale_mdlm
            mdlm_steps = args.scale_mdlm.get((length, batch), length)
            cases["mdlm_cached"] = (mdlm, mdlm_steps, {})
            times: dict[str, list[float]] = {k: [] for k in cases}
            nfe: dict[str, int] = {}
            tokens: dict[str, torch.Tensor] = {}
            for r in range(repeats):
                for name, (model, steps, options) in cases.items():
                    o, sec = timed(lambda: generate(model, Unconditional(), batch, steps, batch, r, length=length, options=options), dev)
                    times[name].append(sec)
                    nfe[name], tokens[name] = o.nfe, o.tokens
                    print(f"L={length} batch={batch} {name} repeat {r}: {sec:.2f} s, nfe {o.nfe}", flush=True)
            med = {k: statistics.median(v) for k, v in times.items()}
            cell = {"length": length, "batch": batch, "repeats": repeats, "seconds_median": med, "seconds_all": times, "nfe": nfe}
            if scaled:  # every MDLM network call has the same shape: time mdlm_steps calls, scale by the full run's nfe
                full = generate(_proxy(mdlm), Unconditional(), batch, length, batch, repeats - 1, length=length).nfe
                cell["mdlm_scaled"] = {"timed_steps": mdlm_steps, "timed_nfe": nfe["mdlm_cached"], "full_steps": length,
                                       "full_nfe_from_proxy": full}
                med["mdlm_cached"] *= full / nfe["mdlm_cached"]
                nfe["mdlm_cached"] = full
            if "bd3lm_uncached" in med:
                cell["same_samples"] = bool(torch.equal(tokens["bd3lm_cached"], tokens["bd3lm_uncached"]))
                cell["speedup_cache"] = med["bd3lm_uncached"] / med["bd3lm_cached"]
            cell["ratio_to_ar"] = {k: v / med["ar_kv_cache"] for k, v in med.items()}
            result["cells"].append(cell)
            write_json(out, result)
    return result


GEN_ROWS = {"ar": [1], "bd3lm_b1_clip": [1], "bd3lm_b4": [1, 4, 16], "bd3lm_b4_clip": [1, 4, 16], "bd3lm_b16": [1, 4, 16],
            "bd3lm_b16_clip": [1, 4, 16], "mdlm": [4, 16, 64, 256]}


def gen_part(args: argparse.Namespace) -> dict:
    """Generative perplexity (judge: the ``ar`` run of ``--part bound``) and unigram entropy of
    ``--n-gen`` unconditional samples of L tokens; bd3lm steps are per block (B = 16: 4 blocks, so
    1, 4, 16 a block = 4, 16, 64 network calls; B = 4: 16 blocks), MDLM's are the total."""
    torch.set_num_threads(1)
    judge = load_judge(str(args.runs / "ar"), torch.device("cpu"))
    rows = {}
    for name, steps in GEN_ROWS.items():
        result = generative_perplexity(str(args.runs / name), judge, n=args.n_gen, steps=steps, batch_size=64, judge_batch_size=64,
                                       seed=0, device="cpu", progress=False)
        rows[name] = [{k: r[k] for k in ("sampling", "steps", "nfe", "n", "length", "gen_ppl", "gen_ppl_seq_mean", "judge_nll_per_token",
                                         "judge_nll_stderr", "unigram_entropy", "unique_unigram_fraction", "repetition_rate", "examples")}
                      for r in result["gen"]]
        print(name, [(r["steps"], round(r["gen_ppl"], 2), round(r["unigram_entropy"], 3)) for r in rows[name]], flush=True)
    return {"judge": str(args.runs / "ar"), "n": args.n_gen, "seed": 0, "rows": rows}


CLIP_GRID = [(1e-3, 1.0), (0.1, 0.9), (0.3, 0.8), (0.45, 0.95), (0.5, 1.0), (0.7, 1.0)]


def clip_part(args: argparse.Namespace) -> dict:
    """The data-driven clipped schedule: the variance of the training loss per interval for the
    unclipped B = 4 and B = 16 runs of ``--part bound``, on ``--eval-blocks`` held-out blocks."""
    torch.set_num_threads(1)
    held_dir = args.runs / "data" / "heldout"
    out = {}
    for name in ("bd3lm_b4", "bd3lm_b16"):
        model, tokenizer = load_model(str(args.runs / name))
        blocks = PackedBlocks(tokenize_corpus(str(held_dir), tokenizer, default_cache_dir()), model.seq_len, valid_fraction=0.0)
        x0 = blocks.batch(blocks.train[: args.eval_blocks])
        var = model.method.clip_variances(model.net, x0, torch.Generator().manual_seed(0), CLIP_GRID, draws=args.draws)
        out[name] = {f"{lo}-{hi}": v for (lo, hi), v in var.items()}
    return {"grid": CLIP_GRID, "draws": args.draws, "eval_blocks": args.eval_blocks, "variance_of_loss_per_token": out}


def cell(text: str) -> tuple[int, int]:
    length, batch = text.split("x")
    return int(length), int(batch)


def cell_steps(text: str) -> tuple[tuple[int, int], int]:
    lb, k = text.split(":")
    return cell(lb), int(k)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("bound", "latency", "clip", "gen"), required=True)
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/lm"))
    p.add_argument("--runs", type=Path, default=Path("runs/block_diffusion"))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--n-samples", type=int, default=8)
    p.add_argument("--eval-blocks", type=int, default=256)
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--skip-uncached", type=cell, nargs="*", default=[], metavar="LxB", help="cells without the uncached bd3lm row")
    p.add_argument("--once", type=cell, nargs="*", default=[], metavar="LxB", help="cells timed once (no repeats)")
    p.add_argument("--scale-mdlm", type=cell_steps, nargs="*", default=[], metavar="LxB:K",
                   help="cells where MDLM is timed at K steps and scaled to its full run's network calls")
    p.add_argument("--block", type=int, default=16)
    p.add_argument("--steps-per-block", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-gen", type=int, default=256, help="samples per generative-perplexity row")
    p.add_argument("--draws", type=int, default=16)
    p.add_argument("--models", nargs="*", choices=list(MODELS), help="train and score only these (the others' rows are kept)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    args.skip_uncached, args.once, args.scale_mdlm = set(args.skip_uncached), set(args.once), dict(args.scale_mdlm)
    result = {"bound": bound_part, "latency": latency_part, "clip": clip_part, "gen": gen_part}[args.part](args)
    out = args.out or RESULTS / f"block_diffusion_{args.part}.json"
    write_json(out, result)
    print(out)


if __name__ == "__main__":
    main()
