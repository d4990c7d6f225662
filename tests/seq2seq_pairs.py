"""Tiny paraphrase pairs, their jsonl writer and training overrides shared by the seq2seq and DLM-One tests."""

import json
from pathlib import Path

PAIRS = [
    ("how do i learn python fast", "what is the fastest way to learn python"),
    ("what is the best way to lose weight", "how can i lose weight quickly"),
    ("why is the sky blue", "what makes the sky look blue"),
    ("how do i get better at chess", "what can i do to improve at chess"),
    ("what is the meaning of life", "what is life about"),
    ("how can i make money online", "what are ways to earn money on the internet"),
    ("which is the best phone to buy", "what phone should i buy"),
    ("how do i stop being lazy", "how can i stop being so lazy"),
    ("what are good books to read", "which books should everyone read"),
    ("how do i cook rice", "what is the best way to cook rice"),
    ("is it safe to travel to india", "how safe is travel in india"),
    ("how do i become a data scientist", "what should i learn to be a data scientist"),
]

# training arguments that keep a run to a few seconds on two CPU cores
TINY = [
    "model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_cond=32", "model.seq_len=24",
    "tokenizer.kind=bpe", "tokenizer.vocab_size=300", "diffusion.continuous.emb_dim=16",
    "diffusion.continuous.timesteps=200", "train.batch_size=8", "train.lr=3e-3", "train.warmup=2",
    "train.log_every=5", "train.eval_every=0", "train.eval_blocks=8", "train.save_every=0",
    "train.sample_steps=4", "data.valid_fraction=0.2",
]


def write_pairs(path: Path, pairs) -> Path:
    """``pairs`` as DiffuSeq jsonl (``{"src": ..., "trg": ...}`` a line) at ``path``."""
    path.write_text("".join(json.dumps({"src": s, "trg": t}) + "\n" for s, t in pairs), encoding="utf-8")
    return path
