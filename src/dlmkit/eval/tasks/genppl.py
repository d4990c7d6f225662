"""Generative perplexity and sample diversity of unconditional samples (``dlm eval gen``).

Protocol (Deschenaux & Gulcehre, "Promises, Outlooks and Challenges of Diffusion Language
Modeling", 2024, Tables 3-5):

1. draw ``n`` unconditional samples of ``length`` tokens from the model (diffusion kinds: one
   row per number of sampling ``steps``; the AR baseline: one row of plain ancestral sampling
   and one of nucleus sampling with p = 0.95, steps do not apply). Networks run in float32;
   the categorical draws inside the samplers are made in float64 (low-precision draws lower
   diversity and fake a better perplexity);
2. decode each sample to text (special tokens dropped) and re-tokenise it with the judge's own
   tokenizer (:mod:`dlmkit.eval.judges`);
3. score it with the judge. ``gen_ppl`` = exp(sum of judge NLLs / sum of judge tokens over all
   samples), i.e. the mean NLL per judge token over all samples, then exp;
   ``gen_ppl_seq_mean`` = the mean over samples of exp(sample NLL / sample tokens), the
   per-sample-then-mean figure some papers report (never below ``gen_ppl``, by Jensen);
4. the three diversity statistics of :mod:`dlmkit.eval.metrics.diversity` (fraction of unique
   unigrams, unigram entropy in nats, repetition rate over the previous 100 tokens) computed
   on the model's *own* token ids, per sample, then averaged.

Each row states the judge, the sample length, the steps, the precision and the seed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from dlmkit.errors import DlmError
from dlmkit.plotting import pyplot, save_png
from dlmkit.eval.metrics.diversity import diversity_stats
from dlmkit.eval.judges import Judge, load_judge
from dlmkit.eval.tasks.registry import ints
from dlmkit.generate import Unconditional, generate
from dlmkit.hub.load import load as load_model
from dlmkit.runtime import resolve_device

AR_NUCLEUS_P = 0.95
PRECISION = "network float32; categorical draws float64"


def load_for_eval(model: Any, device: torch.device) -> tuple[Any, Any, str]:
    """(model, tokenizer, name) from a model/run folder or an already loaded ``(DlmModel, Tokenizer)`` pair."""
    if isinstance(model, tuple):
        m, tok = model
        return m, tok, getattr(m, "name_or_path", m.kind)
    m, tok = load_model(model, device)
    return m, tok, str(model)


def check_lm_kind(model: Any) -> None:
    if model.method.data_format != "lm":
        raise DlmError(f"a {model.kind} model is a sequence-to-sequence model: unconditional LM evaluations do not apply")


@torch.no_grad()
def draw_samples(model: Any, n: int, length: int, *, steps: int, seed: int, batch_size: int, options: dict[str, Any] | None = None, progress: bool = False, desc: str = "sample") -> tuple[list[list[int]], int, float]:
    """``n`` unconditional samples (token ids), the network calls per batch and the seconds taken."""
    out = generate(model, Unconditional(), n, steps, batch_size, seed, length=length, options=options, autocast=False,
                   progress=progress, desc=desc)
    return out.tokens.tolist(), out.nfe, out.seconds


def generative_perplexity(
    model: Any,
    judge: str | Judge,
    *,
    n: int = 1000,
    steps: Sequence[int] = (32, 128, 1024),
    length: int | None = None,
    batch_size: int = 16,
    judge_batch_size: int = 8,
    seed: int = 0,
    device: str | None = None,
    temperature: float = 1.0,
    sampler: str | None = None,
    examples: int = 3,
    return_samples: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Rows of generative perplexity + diversity, one per steps value (or AR sampling mode).

    ``model``: a checkpoint/run folder or a loaded ``(DlmModel, Tokenizer)`` pair; ``judge``: a
    :func:`load_judge` spec or a loaded :class:`Judge`. ``temperature`` divides the sampler's
    logits (every row; below 1 trades diversity for perplexity, the frontier a fair comparison of
    samplers is read on). ``sampler``: a diffusion kind's sampler by name (``dlm sample --sampler``;
    default: the kind's own). With ``return_samples`` each row also holds all ``texts`` and ``token_ids``.
    """
    if n < 1:
        raise DlmError("--n must be at least 1")
    if not temperature > 0:
        raise DlmError(f"--temperature must be positive, got {temperature}")
    dev = resolve_device(device)
    net_model, tokenizer, name = load_for_eval(model, dev)
    check_lm_kind(net_model)
    length = length or net_model.seq_len
    if length > net_model.seq_len:
        raise DlmError(f"a sample of {length} tokens is longer than the model's context ({net_model.seq_len})")
    judge_obj = judge if isinstance(judge, Judge) else load_judge(judge, dev)
    if net_model.method.causal:
        if sampler:
            raise DlmError(f"--sampler {sampler}: an AR model samples token by token (its rows: ancestral and nucleus p={AR_NUCLEUS_P})")
        settings = [("ancestral", 0, {}), (f"nucleus p={AR_NUCLEUS_P}", 0, {"top_p": AR_NUCLEUS_P})]
    else:
        if not steps or min(steps) < 1:
            raise DlmError("--steps must be positive integers")
        settings = [(f"sampler {sampler}" if sampler else "default sampler", int(s), {"sampler": sampler} if sampler else {}) for s in steps]
    if temperature != 1.0:
        settings = [(f"{label}, temperature {temperature:g}", s, {**options, "temperature": temperature}) for label, s, options in settings]
    rows = []
    for label, s, options in settings:
        ids, nfe, seconds = draw_samples(net_model, n, length, steps=s, seed=seed, batch_size=batch_size, options=options, progress=progress, desc=f"sample {label} steps={s}")
        texts = tokenizer.decode_batch(ids)
        t0 = time.perf_counter()
        scores = judge_obj.score_texts(texts, batch_size=judge_batch_size, progress=progress)
        judge_seconds = time.perf_counter() - t0
        agg = scores.aggregate()
        div = diversity_stats(ids)
        rows.append(
            {
                "model": name,
                "kind": net_model.kind,
                "sampling": label,
                "steps": s if not net_model.method.causal else None,
                "nfe": nfe,
                "n": n,
                "length": length,
                "seed": seed,
                "temperature": temperature,
                "sampler": options.get("sampler"),
                "precision": PRECISION,
                **judge_obj.describe(),
                "gen_ppl": agg["ppl"],
                "gen_ppl_seq_mean": agg["ppl_seq_mean"],
                "judge_nll_per_token": agg["nll_per_token"],
                "judge_nll_stderr": agg["nll_stderr"],
                "judge_tokens": agg["tokens"],
                "empty_samples": agg["empty_texts"],
                "truncated_samples": agg["truncated_texts"],
                "unique_unigram_fraction": div["unique_unigram_fraction"],
                "unigram_entropy": div["unigram_entropy"],
                "repetition_rate": div["repetition_rate"],
                "sample_seconds": seconds,
                "samples_per_s": n / seconds if seconds > 0 else None,
                "judge_seconds": judge_seconds,
                "examples": texts[:examples],
            }
        )
        if return_samples:
            rows[-1].update(texts=texts, token_ids=ids)
    return {"gen": rows}


def render_gen_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`generative_perplexity` rows."""
    lines = [
        "| model | kind | sampling | steps | gen. ppl | gen. ppl (per-sample mean) | unique unigrams | entropy | repetition | samples/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sps = f"{r['samples_per_s']:.2f}" if r.get("samples_per_s") else "-"
        lines.append(
            f"| {r['model']} | {r['kind']} | {r['sampling']} | {r['steps'] if r['steps'] is not None else '-'} | {r['gen_ppl']:.2f} | "
            f"{r['gen_ppl_seq_mean']:.2f} | {r['unique_unigram_fraction']:.3f} | {r['unigram_entropy']:.3f} | {r['repetition_rate']:.3f} | {sps} |"
        )
    if rows:
        r = rows[0]
        lines.append(f"\nJudge: {r['judge']}; {r['n']} samples of {r['length']} tokens; {r['precision']}; seed {r['seed']}.")
    return "\n".join(lines)


def plot_gen(rows: list[dict[str, Any]], path: Path) -> Path:
    """Generative perplexity and unigram entropy vs steps; AR rows as horizontal lines."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    models = list(dict.fromkeys(r["model"] for r in rows))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["--", ":", "-."]
    for i, m in enumerate(models):
        c = colors[i % len(colors)]
        mine = [r for r in rows if r["model"] == m]
        diff = sorted((r for r in mine if r.get("steps") is not None), key=lambda r: r["steps"])
        for ax, key in zip(axes, ("gen_ppl", "unigram_entropy")):
            if diff:
                ax.plot([r["steps"] for r in diff], [r[key] for r in diff], "o-", color=c, label=f"{Path(m).name} ({diff[0]['kind']})")
            for j, r in enumerate(r for r in mine if r.get("steps") is None):
                ax.axhline(r[key], color=c, ls=styles[j % len(styles)], label=f"{Path(m).name} ({r['kind']}, {r['sampling']})")
    for ax, label in zip(axes, ("generative perplexity", "unigram entropy (nats)")):
        ax.set_xscale("log")
        ax.set_xlabel("sampling steps")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    judge = rows[0].get("judge", "?")
    fig.suptitle(f"Unconditional samples of {rows[0].get('length')} tokens, judge: {judge}", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)
    return path

def run_task(args: Any) -> dict[str, Any]:
    """``dlm eval gen``: one row per steps value (AR: plain and nucleus rows)."""
    return generative_perplexity(args.model, args.judge, n=args.n, steps=ints(args.steps), length=args.length, batch_size=args.batch_size,
                                 judge_batch_size=args.judge_batch_size, seed=args.seed, device=args.device, temperature=args.temperature,
                                 sampler=args.sampler, progress=not args.no_progress)


def render_result(result: dict[str, Any]) -> str:
    return render_gen_table(result["gen"])


def report_section(rows: list[dict[str, Any]], stem: Path) -> tuple[list[str], list[str]]:
    p = plot_gen(rows, Path(f"{stem}_genppl.png"))
    return [
        "## Generative perplexity and diversity of unconditional samples",
        "",
        "Generative perplexity: exp(mean judge NLL per judge token over all samples); the per-sample column is the mean over samples of exp(sample NLL / sample tokens). "
        "Diversity statistics are per sample on the model's own tokens, then averaged.",
        "",
        render_gen_table(rows),
        "",
        f"![generative perplexity]({p.name})",
        "",
    ], [str(p)]
