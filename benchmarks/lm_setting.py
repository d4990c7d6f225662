"""Which lever lets masked diffusion, SEDD and AR learn context on a 2-core CPU: short pilots.

Each pilot trains one kind with the ``tiny`` preset plus the pilot's overrides (tokenizer size,
block length, batch, learning rate, width) on the split of ``discrete_lm.py`` (Austen, KJV,
fortunes, TinyStories; the last 5% of every file held out) for a fixed number of steps on one
thread, and records the validation curve (``train.eval_blocks`` blocks spread over the held-out
text of all four corpora) beside the reference a context-free model reaches on exactly those
blocks: the cross-entropy of a unigram fitted on the training text. A kind "learns context" when
its loss (diffusion: the NELBO bound) falls clearly below that reference.

    python benchmarks/lm_setting.py --pilots byte-L64-d128 --kinds mdlm ar --steps 300 \\
        --out benchmarks/results/lm_setting_pilots.json

Results are appended to ``--out`` (one entry per pilot and kind, rewritten atomically).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from discrete_lm import split_corpus  # noqa: E402  (the benchmarks' shared data split)

from dlmkit.data.blocks import PackedBlocks
from dlmkit.data.corpus import tokenize_corpus
from dlmkit.data.tokenizer import Tokenizer
from dlmkit.engine.config import RunConfig, load_config
from dlmkit.io import write_json
from dlmkit.recipes.pretrain import train
from dlmkit.runtime import default_cache_dir

# name -> overrides of the tiny preset (byte: 256 bytes + 4 specials, no merges)
PILOTS: dict[str, list[str]] = {
    "bpe4096-L128-d256": [],
    "bpe4096-L64-d128": ["model.seq_len=64", "model.d_model=128", "model.d_cond=64"],
    "bpe512-L64-d128": ["tokenizer.vocab_size=512", "model.seq_len=64", "model.d_model=128", "model.d_cond=64"],
    "byte-L128-d128": ["tokenizer.vocab_size=260", "model.d_model=128", "model.d_cond=64"],
    "byte-L64-d128": ["tokenizer.vocab_size=260", "model.seq_len=64", "model.d_model=128", "model.d_cond=64"],
    "byte-L64-d128-lr3e-3": ["tokenizer.vocab_size=260", "model.seq_len=64", "model.d_model=128", "model.d_cond=64", "train.lr=3e-3"],
    "byte-L64-d256": ["tokenizer.vocab_size=260", "model.seq_len=64"],
}


def pilot_config(name: str, kind: str, args: argparse.Namespace, train_dir: Path, held_dir: Path) -> RunConfig:
    """The tiny preset with the pilot's overrides, ``--batch`` sequences a step, constant-after-warm-up lr."""
    return load_config("tiny", [
        *PILOTS[name], *args.set, f"model.kind={kind}", f"train.steps={args.steps}", f"train.batch_size={args.batch}",
        f"train.eval_every={args.eval_every}", f"train.eval_blocks={args.eval_blocks}", "train.save_every=0",
        "train.warmup=20", f"data.train={train_dir}", f"data.valid={held_dir}", f"out_dir={args.runs / name / kind}",
    ])


def unigram_reference(cfg: RunConfig, tokenizer: Tokenizer, cache: Path) -> float:
    """Cross-entropy (nats per token) on the engine's validation blocks of a unigram fitted on the
    training tokens (add-1/2 smoothing over the vocabulary): what a context-free model reaches there."""
    counts = np.bincount(tokenize_corpus(cfg.data.train, tokenizer, cache), minlength=tokenizer.vocab_size) + 0.5
    logp = np.log(counts / counts.sum())
    valid = PackedBlocks(tokenize_corpus(cfg.data.valid, tokenizer, cache), cfg.model.seq_len, valid_fraction=0.0)
    order = valid.train
    n = min(len(order), cfg.train.eval_blocks)
    picked = order[np.linspace(0, len(order) - 1, n).round().astype(np.int64)]
    return float(-logp[valid.batch(picked).numpy()].mean())


def bytes_per_token(held_dir: Path, tokenizer: Tokenizer, cfg: RunConfig) -> float:
    """UTF-8 bytes of the held-out text per token (end-of-text tokens included): to compare gaps per byte."""
    n_bytes = sum(len(f.read_bytes()) for f in sorted(held_dir.glob("*.txt")))
    cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()
    return n_bytes / len(tokenize_corpus(cfg.data.valid, tokenizer, cache))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/lm"))
    p.add_argument("--runs", type=Path, default=Path("runs/lm_setting"))
    p.add_argument("--pilots", nargs="+", required=True, choices=sorted(PILOTS))
    p.add_argument("--kinds", nargs="+", default=["mdlm", "ar"])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-blocks", type=int, default=256)
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every pilot")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/lm_setting_pilots.json"))
    p.add_argument("--collect", action="store_true", help="do not train: record the runs already in --runs (stopped ones too)")
    args = p.parse_args()
    torch.set_num_threads(1)
    train_dir, held_dir = split_corpus(args.data, args.runs / "data", 0.05)
    results = json.loads(args.out.read_text()) if args.out.is_file() else []
    for name in args.pilots:
        for kind in args.kinds:
            cfg = pilot_config(name, kind, args, train_dir, held_dir)
            seconds = tokens_per_s = None
            if not args.collect:
                shutil.rmtree(cfg.out_dir, ignore_errors=True)  # a pilot always starts afresh
                start = time.perf_counter()
                tokens_per_s = train(cfg, progress=False).tokens_per_s
                seconds = time.perf_counter() - start
            elif not (Path(cfg.out_dir) / "metrics.jsonl").is_file():
                continue
            tok = Tokenizer.load(Path(cfg.out_dir) / "tokenizer")
            ref = unigram_reference(cfg, tok, Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir())
            metrics = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
            if tokens_per_s is None:  # a collected run: the median of its logged throughput
                tokens_per_s = float(np.median([m["tokens_per_s"] for m in metrics if "tokens_per_s" in m]))
            curve = [{"step": m["step"], "tokens": m["step"] * args.batch * cfg.model.seq_len, "val_loss": m["val_loss"]}
                     for m in metrics if "val_loss" in m]
            row = {"pilot": name, "kind": kind, "overrides": [*PILOTS[name], *args.set], "batch": args.batch,
                   "steps": curve[-1]["step"], "seq_len": cfg.model.seq_len, "vocab": tok.vocab_size, "seconds": seconds,
                   "tokens_per_s": tokens_per_s, "unigram_reference": ref, "val_curve": curve,
                   "final_minus_unigram": curve[-1]["val_loss"] - ref,
                   "bytes_per_token": bytes_per_token(held_dir, tok, cfg), "threads": torch.get_num_threads()}
            results.append(row)
            write_json(args.out, results)
            print(f"{name} {kind}: {seconds} s, {tokens_per_s} tok/s, val {curve[-1]['val_loss']:.3f} "
                  f"vs unigram {ref:.3f} ({row['final_minus_unigram']:+.3f}); curve "
                  + " ".join(f"{c['val_loss']:.2f}" for c in curve), flush=True)


if __name__ == "__main__":
    main()
