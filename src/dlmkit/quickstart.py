"""``dlm quickstart``: train a tiny model of each language-model kind, sample, write a report.

Needs nothing but the installed package: without ``--data`` it trains on an English corpus built
from the Python standard library's own documentation (``dlmkit.data.default_corpus``). One BPE
tokenizer is trained once and shared by every kind, so their losses are per token of the same
text. The kinds are those of the README's kinds table (``QUICK_KINDS``: the AR baseline, MDLM,
SEDD absorbing and uniform; ``--kinds`` picks others). It says on standard error what it is
doing (corpus, tokenizer, ``kind 2/4``, each kind's time and loss). The report (markdown, a PNG
of the loss curves, samples) goes into the run folder.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch

from dlmkit.data.default_corpus import write_default_corpus
from dlmkit.engine.config import load_config
from dlmkit.io import write_text
from dlmkit.methods.base import get_method_class
from dlmkit.engine.curves import plot_runs
from dlmkit.engine.distributed import DistInfo
from dlmkit.engine.loop import say
from dlmkit.recipes.pretrain import prepare_tokenizer, train

# Small enough that the four kinds train in about 3 minutes together on a 2-core CPU (one thread).
QUICK_OVERRIDES = [
    "model.n_layers=2",
    "model.d_model=128",
    "model.n_heads=4",
    "model.seq_len=64",
    "tokenizer.vocab_size=2048",
    "train.batch_size=16",
    "train.lr=2e-3",
    "train.warmup=20",
    "train.eval_every=50",
    "train.eval_blocks=64",
    "train.save_every=100",
    "train.log_every=10",
    "train.sample_steps=64",
]
DEFAULT_STEPS = 300
QUICK_KINDS = ("ar", "mdlm", "sedd_absorb", "sedd_uniform")  # the kinds table of the README, AR first


def run_quickstart(
    out_dir: str = "runs/quickstart",
    data: str | None = None,
    kinds: list[str] | None = None,
    steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, sample and report; returns ``report`` (the markdown path), per-kind results and time."""
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = str(write_default_corpus(out / "data"))
        say(f"quickstart: corpus built from the Python documentation -> {data}")
    kinds = kinds or list(QUICK_KINDS)
    for kind in kinds:
        get_method_class(kind)  # unknown kinds fail before any training
    steps = steps or DEFAULT_STEPS

    def config(kind: str, run_dir: Path) -> Any:
        cfg = load_config("tiny", [*QUICK_OVERRIDES, f"model.kind={kind}", f"train.steps={steps}", f"data.train={data}", f"out_dir={run_dir}"])
        cfg.data.cache_dir = str(out / "cache")
        return cfg

    shared = config(kinds[0], out)
    shutil.rmtree(out / "tokenizer", ignore_errors=True)
    say(f"quickstart: training a byte-level BPE tokenizer ({shared.tokenizer.vocab_size} tokens) shared by every kind ...")
    t0 = time.perf_counter()
    prepare_tokenizer(shared, out, DistInfo(0, 1, 0, torch.device("cpu")))  # writes out/tokenizer
    say(f"quickstart: tokenizer trained in {time.perf_counter() - t0:.0f} s")
    results = []
    for n, kind in enumerate(kinds, 1):
        run_dir = out / kind
        if run_dir.exists():
            shutil.rmtree(run_dir)
        shutil.copytree(out / "tokenizer", run_dir / "tokenizer")
        left = "" if n == 1 else f"; about {(time.perf_counter() - start) / (n - 1) * (len(kinds) - n + 1) / 60:.1f} min left"
        say(f"quickstart: kind {n}/{len(kinds)}: {kind}, {steps} steps{left}")
        result = train(config(kind, run_dir), progress=progress)
        val = f", validation loss {'<= ' if get_method_class(kind).nll_is_bound else ''}{result.val_loss:.3f}" if result.val_loss is not None else ""
        say(f"quickstart: {kind} trained in {result.seconds:.0f} s{val}")
        samples = sorted((run_dir / "samples").glob("*.txt"))
        results.append(
            {
                "kind": kind,
                "bound": get_method_class(kind).nll_is_bound,
                "steps": result.steps,
                "seconds": result.seconds,
                "final_loss": result.final_loss,
                "val_loss": result.val_loss,
                "history": result.history,
                "samples": samples[-1].read_text(encoding="utf-8") if samples else "",
                "run_dir": str(run_dir),
            }
        )
    plot = out / "loss_curves.png"
    plot_runs([r["run_dir"] for r in results], str(plot), title="loss (nats/token; a bound for the diffusion kinds)")
    report = out / "report.md"
    write_text(report, render_report(results, data, plot.name, shared))
    return {
        "report": str(report),
        "plot": str(plot),
        "seconds": time.perf_counter() - start,
        "runs": [{k: v for k, v in r.items() if k not in ("history", "samples")} for r in results],
    }


def render_report(results: list[dict[str, Any]], data: str, plot_name: str, cfg: Any) -> str:
    m = cfg.model
    lines = [
        "# dlmkit quickstart",
        "",
        f"Data: `{data}`. Each kind: {m.n_layers} layers x {m.d_model} wide, {m.n_heads} heads, context {m.seq_len}, "
        f"byte-level BPE of {cfg.tokenizer.vocab_size} tokens shared by all kinds, {cfg.train.batch_size} sequences a step.",
        "",
        "Validation loss is nats per token on held-out blocks: the exact NLL for the AR model and an upper",
        "bound on it (the training objective, an ELBO) for the diffusion kinds, marked `<=`.",
        "",
        "| kind | steps | seconds | final train loss | validation loss | perplexity |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    import math

    for r in results:
        le = "<= " if r["bound"] else ""
        val = f"{le}{r['val_loss']:.3f}" if r["val_loss"] is not None else "n/a"
        ppl = f"{le}{math.exp(r['val_loss']):.1f}" if r["val_loss"] is not None else "n/a"
        lines.append(f"| {r['kind']} | {r['steps']} | {r['seconds']:.0f} | {r['final_loss']:.3f} | {val} | {ppl} |")
    lines += ["", f"![loss curves]({plot_name})", "", "## Samples", ""]
    for r in results:
        lines += [f"### {r['kind']} (`{r['run_dir']}`)", "", "```", r["samples"].strip(), "```", ""]
    lines += [
        "Next: `dlm sample RUN --prefix TEXT`, `dlm eval ppl RUN... --data FILE`, `dlm train tiny data.train=YOUR_TEXT`.",
        "",
    ]
    return "\n".join(lines)
