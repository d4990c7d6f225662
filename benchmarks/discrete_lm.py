"""Discrete diffusion against AR at equal training tokens: the SEDD evaluation paper's Table 1 at
this machine's scale, the cached masked sampler's speed-up, and the uniform-conditioning bias.

1. Trains the ``tiny`` preset of each kind (``--kinds``; ``--set`` overrides it, e.g. the byte-level
   setting of the README's "Diffusion against AR at equal training tokens") on the same text (Austen, KJV, fortunes, TinyStories; the last 5% of
   every file held out) for the same number of steps and batch, with one shared tokenizer. The
   validation curve (``train.eval_blocks`` blocks spread over the held-out text of all four
   corpora) gives the ratio (diffusion bound perplexity / AR perplexity) against training tokens.
2. Perplexity on the first ``--eval-sequences`` blocks of each corpus's held-out text (a row per
   corpus, and pooled: the mean NLL over the four) and of the WikiText-2 and PTB test files:
   exact for AR, upper bounds (``<=``) for diffusion (``dlm eval ppl``). Beside every figure, the
   reference a context-free model reaches on exactly those blocks: the cross-entropy of a unigram
   fitted on the training text.
3. Wall time of the masked sampler with and without the cache at 1024 steps, one block.
4. The bias of holding tokens fixed in a uniform-noise model, against the exact conditional, on
   an enumerable toy: the plain uniform score versus the clean-position score.

    python benchmarks/discrete_lm.py --runs runs/lm_byte --kinds ar mdlm sedd_absorb sedd_uniform \
        --set tokenizer.vocab_size=260 model.seq_len=64 model.d_model=128 model.d_cond=64 --steps 1200 \
        --batch 32 --jobs 3 --eval-sequences 64 --n-samples 8 --repeats 2 \
        --out benchmarks/results/discrete_lm_byte.json --plot benchmarks/results/discrete_lm_byte.png

Runs are kept in ``--runs`` and reused when already trained (``--retrain`` to start over);
``--jobs 2`` trains two kinds at a time with one thread each (faster than one at a time with
two threads on a 2-core machine). The validation curve of every run goes into the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from dlmkit.engine.config import load_config
from dlmkit.data.blocks import PackedBlocks
from dlmkit.data.corpus import iter_documents, tokenize_corpus
from dlmkit.data.tokenizer import Tokenizer, build_tokenizer
from dlmkit.eval.tasks.latency import timed
from dlmkit.eval.tasks.perplexity import perplexity_table, render_table
from dlmkit.io import write_json
from dlmkit.hub.checkpoint import step_folders
from dlmkit.hub.load import load as load_model
from dlmkit.recipes.pretrain import train
from dlmkit.runtime import default_cache_dir

KINDS = ["ar", "mdlm", "sedd_absorb", "sedd_uniform"]
TRAIN_PARTS = ["austen", "kjv.txt", "fortunes.txt", "tinystories"]


def split_corpus(data: Path, out: Path, held: float) -> tuple[Path, Path]:
    """Copy every training file into train/ (first 1-held of its characters) and heldout/ (the rest)."""
    train_dir, held_dir = out / "train", out / "heldout"
    if train_dir.is_dir() and held_dir.is_dir():
        return train_dir, held_dir
    for part in TRAIN_PARTS:
        src = data / part
        files = sorted(src.glob("*.txt")) if src.is_dir() else [src]
        for f in files:
            text = f.read_text(encoding="utf-8", errors="replace")
            cut = text.rfind("\n", 0, int(len(text) * (1 - held))) + 1 or int(len(text) * (1 - held))
            for folder, piece in ((train_dir, text[:cut]), (held_dir, text[cut:])):
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{part.replace('.txt', '')}-{f.name}").write_text(piece, encoding="utf-8")
    return train_dir, held_dir


def corpus_folders(held_dir: Path) -> dict[str, Path]:
    """One folder per training corpus holding (links to) its held-out files, for per-corpus rows."""
    out = {}
    for part in TRAIN_PARTS:
        name = part.replace(".txt", "")
        folder = held_dir.parent / "heldout_by_corpus" / name
        folder.mkdir(parents=True, exist_ok=True)
        for f in sorted(held_dir.glob(f"{name}-*.txt")):
            if not (folder / f.name).exists():
                (folder / f.name).symlink_to(f.resolve())
        out[name] = folder
    return out


def kind_config(kind: str, args: argparse.Namespace, train_dir: Path, held_dir: Path):
    """The ``tiny`` run config of one kind (with ``--set``): same data, steps, batch and schedule for every kind."""
    return load_config(
        "tiny",
        [
            *args.set,
            f"model.kind={kind}",
            f"train.steps={args.steps}",
            f"train.batch_size={args.batch}",
            f"train.eval_every={max(50, args.steps // 10)}",
            f"train.save_every={max(100, args.steps // 4)}",
            f"data.train={train_dir}",
            f"data.valid={held_dir}",
            f"out_dir={args.runs / kind}",
        ],
    )


def train_one(kind: str, args: argparse.Namespace, train_dir: Path, held_dir: Path, threads: int) -> dict:
    """Train one kind (in a worker process when ``--jobs`` > 1) with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    result = train(kind_config(kind, args, train_dir, held_dir), progress=not args.quiet and args.jobs == 1)
    return {"train_seconds": time.perf_counter() - start, "tokens_per_s": result.tokens_per_s, "val_loss": result.val_loss}


def val_curve(run: Path) -> list[dict]:
    """(step, validation loss) at every evaluation of a run."""
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{"step": m["step"], "val_loss": m["val_loss"]} for m in metrics if "val_loss" in m]


def train_all(args: argparse.Namespace, train_dir: Path, held_dir: Path) -> dict[str, dict]:
    """Train every kind not yet trained to ``--steps``, ``--jobs`` at a time, on one shared tokenizer."""
    shared_tok = args.runs / "tokenizer"
    if not (shared_tok / "tokenizer.json").is_file():
        cfg = kind_config("ar", args, train_dir, held_dir)
        build_tokenizer(cfg.tokenizer, iter_documents(cfg.data.train, text_field=cfg.data.text_field, doc_split=cfg.data.doc_split)).save(shared_tok)
    todo = []
    for kind in args.kinds:
        run = args.runs / kind
        done = step_folders(run) and step_folders(run)[0].name == f"step_{args.steps:07d}"
        if args.retrain or not done:
            if run.exists():
                shutil.rmtree(run)
            shutil.copytree(shared_tok, run / "tokenizer")
            todo.append(kind)
    runs: dict[str, dict] = {kind: {"reused": True} for kind in args.kinds if kind not in todo}
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {kind: pool.submit(train_one, kind, args, train_dir, held_dir, threads) for kind in todo}
        runs.update({kind: f.result() for kind, f in futures.items()})
    for kind in args.kinds:
        runs[kind]["val_curve"] = val_curve(args.runs / kind)
        runs[kind]["val_loss"] = runs[kind]["val_curve"][-1]["val_loss"]
    return runs


def unigram_logp(train_dir: Path, tokenizer: Tokenizer) -> np.ndarray:
    """Log-probabilities of a unigram fitted on the training text (add-1/2 over the vocabulary)."""
    counts = np.bincount(tokenize_corpus(str(train_dir), tokenizer, default_cache_dir()), minlength=tokenizer.vocab_size) + 0.5
    return np.log(counts / counts.sum())


def unigram_on_blocks(data: str, logp: np.ndarray, tokenizer: Tokenizer, seq_len: int, n: int) -> float:
    """Cross-entropy (nats per token) of that unigram on exactly the blocks ``dlm eval ppl`` scores
    (the first ``n`` blocks of ``seq_len`` tokens of ``data``): what a context-free model reaches there."""
    blocks = PackedBlocks(tokenize_corpus(data, tokenizer, default_cache_dir()), seq_len, valid_fraction=0.0)
    return float(-logp[blocks.batch(blocks.train[:n]).numpy()].mean())


def unigram_on_valid_blocks(cfg, logp: np.ndarray, tokenizer: Tokenizer) -> float:
    """The same unigram's cross-entropy on the blocks the training loop validates on
    (``train.eval_blocks`` blocks spaced evenly over ``data.valid``, as the engine picks them)."""
    valid = PackedBlocks(tokenize_corpus(cfg.data.valid, tokenizer, default_cache_dir()), cfg.model.seq_len, valid_fraction=0.0)
    n = min(valid.n_blocks, cfg.train.eval_blocks)
    picked = valid.train[np.linspace(0, valid.n_blocks - 1, n).round().astype(np.int64)]
    return float(-logp[valid.batch(picked).numpy()].mean())


def ratio_curves(training: dict[str, dict], tokens_per_step: int) -> dict[str, list[dict]]:
    """(diffusion bound perplexity / AR perplexity) at every evaluation both runs made, per diffusion kind."""
    ar = {c["step"]: c["val_loss"] for c in training["ar"]["val_curve"]}
    return {
        kind: [{"step": c["step"], "tokens": c["step"] * tokens_per_step, "ratio": math.exp(c["val_loss"] - ar[c["step"]])}
               for c in info["val_curve"] if c["step"] in ar]
        for kind, info in training.items() if kind != "ar"
    }


@torch.no_grad()
def cached_speedup(run: Path, steps: int, length: int, batch: int, repeats: int) -> dict:
    """Median wall time of the masked sampler with and without the cache, same seed (interleaved
    repeats, timed by the latency benchmark's device-synchronised ``timed``)."""
    model, _ = load_model(run)
    length = min(length, model.seq_len)
    times: dict[str, list[float]] = {"cached": [], "ancestral": []}
    outputs = {}
    for r in range(repeats + 1):
        for sampler in times:
            gen = torch.Generator(device=model.device).manual_seed(r)
            out, seconds = timed(lambda: model.method.sample(model.net, batch, length, steps=steps, generator=gen, sampler=sampler), model.device)
            if r:  # the first round warms up
                times[sampler].append(seconds)
            outputs[sampler] = out
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "steps": steps,
        "length": length,
        "batch": batch,
        "seconds_cached": med["cached"],
        "seconds_uncached": med["ancestral"],
        "speedup": med["ancestral"] / med["cached"],
        "nfe_cached": outputs["cached"].nfe,
        "nfe_uncached": outputs["ancestral"].nfe,
        "identical_samples": bool(torch.equal(outputs["cached"].tokens, outputs["ancestral"].tokens)),
    }


def uniform_conditioning_bias(steps: int) -> dict:
    """TV between the held-fixed sampler's output and the exact conditional on a toy (V=3, L=3)."""
    from dlmkit.diffusion.graphs import Uniform
    from dlmkit.diffusion.schedules import Geometric
    from dlmkit.sampling.conditioning import Condition, conditioning_bias

    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from toy import Toy, markov_chain  # the test suite's enumerable toy

    toy = Toy(markov_chain(3, 3, seed=5), 3, 3, "uniform")
    condition = Condition.from_spans(3, prefix=[2])
    graph, schedule = Uniform(3), Geometric(1e-4, 20.0)
    held = conditioning_bias(toy.data, toy.score_fn, graph, schedule, 3, condition, steps)
    cond = toy.conditional([0], [2])
    clean = conditioning_bias(toy.data, cond.score_fn, graph, schedule, 3, condition, steps)
    return {"steps": steps, "tv_held_fixed": held.tv, "tv_clean_position_score": clean.tv}


def plot_curves(result: dict, path: Path) -> None:
    """Left: validation loss (nats per token; diffusion: the NELBO bound) against training tokens,
    per kind, with the unigram reference on the same blocks; right: bound perplexity / AR perplexity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens_per_step = result["tokens_per_step"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    for kind, info in result["training"].items():
        curve = info["val_curve"]
        ax.plot([c["step"] * tokens_per_step / 1e6 for c in curve], [c["val_loss"] for c in curve], "o-", ms=3, label=kind)
    ax.axhline(result["valid_unigram_reference"], color="grey", ls="--", lw=1, label="unigram (same blocks)")
    ax.set(xlabel="training tokens (millions)", ylabel="validation loss (nats / token)", title="held-out blocks of all four corpora")
    for kind, curve in result["ratio_curves"].items():
        bx.plot([c["tokens"] / 1e6 for c in curve], [c["ratio"] for c in curve], "o-", ms=3, label=kind)
    bx.axhline(1.0, color="grey", ls="--", lw=1)
    bx.set(xlabel="training tokens (millions)", ylabel="bound perplexity / AR perplexity", yscale="log", title="diffusion against AR")
    for a in (ax, bx):
        a.grid(True, alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/lm"))
    p.add_argument("--runs", type=Path, default=Path("runs/bench_discrete"))
    p.add_argument("--kinds", nargs="+", default=KINDS, choices=KINDS, help="kinds to train (ar is always needed for the ratios)")
    p.add_argument("--set", nargs="*", default=[], help="overrides of the tiny preset for every kind (e.g. the LM setting)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--held", type=float, default=0.05)
    p.add_argument("--eval-sequences", type=int, default=128, help="blocks per data set (per corpus for the held-out text)")
    p.add_argument("--n-samples", type=int, default=16, help="Monte-Carlo samples of t per block (diffusion bounds)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--speed-batches", type=int, nargs="*", default=[1], help="batch sizes for the cached-sampler timing (none: skip)")
    p.add_argument("--jobs", type=int, default=1, help="kinds trained at once (each gets cpu_count/jobs threads)")
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/discrete_lm.json"))
    p.add_argument("--plot", type=Path, default=None, help="PNG of the validation and ratio curves")
    args = p.parse_args()
    if "ar" not in args.kinds:
        p.error("--kinds must include ar (the reference of every ratio)")
    train_dir, held_dir = split_corpus(args.data, args.runs / "data", args.held)
    training = train_all(args, train_dir, held_dir)
    cfg = kind_config("ar", args, train_dir, held_dir)
    tokenizer = Tokenizer.load(args.runs / "tokenizer")
    logp = unigram_logp(train_dir, tokenizer)
    corpora = {name: str(folder) for name, folder in corpus_folders(held_dir).items()}
    evals = {**corpora, "wikitext2": str(args.data / "wikitext2" / "raw.test.txt"), "ptb": str(args.data / "ptb" / "ptb.test.txt")}
    table = perplexity_table(
        [str(args.runs / k) for k in args.kinds], list(evals.values()), batch_size=16, n_samples=args.n_samples,
        max_sequences=args.eval_sequences, progress=not args.quiet,
    )
    names = {path: name for name, path in evals.items()}
    reference = {name: unigram_on_blocks(path, logp, tokenizer, cfg.model.seq_len, args.eval_sequences) for name, path in evals.items()}
    for row in table:
        row["data_name"] = names[row["data"]]
        row["unigram_reference_nll"] = reference[row["data_name"]]
    pooled = {k: statistics.fmean(r["nll_per_token"] for r in table if r["kind"] == k and r["data_name"] in corpora) for k in args.kinds}
    reference["heldout_pooled"] = statistics.fmean(reference[c] for c in corpora)
    speed = [cached_speedup(args.runs / "mdlm", 1024, 128, b, args.repeats) for b in args.speed_batches] if "mdlm" in args.kinds else []
    bias = uniform_conditioning_bias(64)
    tokens_per_step = args.batch * cfg.model.seq_len
    result = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "tokens_per_step": tokens_per_step,
        "training": training,
        "valid_unigram_reference": unigram_on_valid_blocks(cfg, logp, tokenizer),
        "ratio_curves": ratio_curves(training, tokens_per_step),
        "perplexity": table,
        "heldout_pooled_nll": pooled,
        "unigram_reference_nll": reference,
        "cached_sampler": speed,
        "uniform_conditioning_bias": bias,
        "targets": {f"{k}_over_ar_ppl_heldout_pooled": math.exp(pooled[k] - pooled["ar"]) for k in args.kinds if k != "ar"},
    }
    write_json(args.out, result)
    if args.plot:
        plot_curves(result, args.plot)
    print(render_table(table))
    print("held-out, pooled over the four corpora (nats/token): "
          + ", ".join(f"{k} {v:.3f}" for k, v in pooled.items()) + f"; unigram on the same blocks {reference['heldout_pooled']:.3f}")
    for s in speed:
        print(f"masked sampler, {s['steps']} steps, {s['length']} tokens, batch {s['batch']}: cached {s['seconds_cached']:.2f} s "
              f"({s['nfe_cached']} calls), uncached {s['seconds_uncached']:.2f} s ({s['nfe_uncached']} calls): {s['speedup']:.1f}x, identical={s['identical_samples']}")
    print(f"uniform conditioning bias (TV, toy, {bias['steps']} steps): held fixed {bias['tv_held_fixed']:.4f}, clean-position score {bias['tv_clean_position_score']:.4f}")
    print(json.dumps(result["targets"]))


if __name__ == "__main__":
    main()
