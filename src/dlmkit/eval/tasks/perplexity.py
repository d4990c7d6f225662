"""Zero-shot perplexity tables: exact for AR models, upper bounds for diffusion models.

Each data set is tokenised with the model's own tokenizer, packed into blocks of the model's
context length (documents joined by end-of-text), and every block is scored. Two aggregations:

* ``ppl`` (the default): exp of the mean NLL per token over all tokens of the data set;
* ``ppl_seq_mean``: exp of each block's mean NLL per token, then averaged over blocks, as the
  SEDD paper reports. By Jensen's inequality it is never below ``ppl``.

For diffusion models both are upper bounds (the NLL is an ELBO bound), printed with ``<=``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from dlmkit.data.blocks import PackedBlocks
from dlmkit.data.corpus import tokenize_corpus
from dlmkit.runtime import network_autocast
from dlmkit.hub.load import load as load_model
from dlmkit.runtime import default_cache_dir, resolve_device


def aggregate(seq_nll: torch.Tensor, seq_tokens: torch.Tensor, seq_stderr: torch.Tensor | None = None) -> dict[str, Any]:
    """Data-set figures from per-sequence NLL sums (nats) and token counts.

    ``nll_stderr``: standard error of the per-token NLL across sequences (delta method for a ratio
    of sums); it includes the Monte-Carlo noise of bound estimates. ``nll_stderr_mc``: the
    Monte-Carlo part alone, from each sequence's own standard error ``seq_stderr`` (how precisely
    the bound on this very data set is known; ``None`` when unknown, 0 for exact NLLs).
    """
    nll, n = seq_nll.double(), seq_tokens.double()
    per_token = nll.sum() / n.sum()
    per_seq = nll / n
    m = len(nll)
    resid = nll - per_token * n
    se = math.sqrt((resid.var(unbiased=True) * m / n.sum() ** 2).item()) if m > 1 else 0.0
    se_mc = None
    if seq_stderr is not None and not torch.isnan(seq_stderr).any():
        se_mc = math.sqrt((seq_stderr.double() ** 2).sum().item()) / n.sum().item()
    return {
        "nll_per_token": per_token.item(),
        "nll_stderr": se,
        "nll_stderr_mc": se_mc,
        "ppl": math.exp(per_token.item()),
        "ppl_seq_mean": per_seq.exp().mean().item(),
        "sequences": m,
        "tokens": int(n.sum().item()),
    }


@torch.no_grad()
def evaluate_model_on(
    model_path: str,
    data: str,
    *,
    batch_size: int = 8,
    n_samples: int = 8,
    estimator: str = "mc",
    max_sequences: int | None = None,
    seed: int = 0,
    device: str | None = None,
    text_field: str = "text",
    progress: bool = True,
) -> dict[str, Any]:
    """Score every block of ``data`` under one model; returns the :func:`aggregate` figures."""
    dev = resolve_device(device)
    model, tokenizer = load_model(model_path, dev)
    cache = Path(os.environ.get("DLM_CACHE", default_cache_dir()))
    tokens = tokenize_corpus(data, tokenizer, cache, text_field=text_field)
    blocks = PackedBlocks(tokens, model.seq_len, valid_fraction=0.0)
    order = blocks.train[:max_sequences] if max_sequences else blocks.train
    gen = torch.Generator(device=dev).manual_seed(seed)
    nlls, ses = [], []
    for i in tqdm(range(0, len(order), batch_size), disable=not progress, desc=f"ppl {Path(data).name}", leave=False):
        x = blocks.batch(order[i : i + batch_size]).to(dev)
        with network_autocast(dev):
            nll, se = model.method.nll(model.net, x, generator=gen, n_samples=n_samples, estimator=estimator)
        nlls.append(nll.cpu())
        ses.append(se.cpu())
    seq_nll = torch.cat(nlls)
    seq_tokens = torch.full_like(seq_nll, model.seq_len)
    row = aggregate(seq_nll, seq_tokens, torch.cat(ses))
    row.update(model=str(model_path), kind=model.kind, data=str(data), bound=model.method.nll_is_bound, n_samples=n_samples if model.method.nll_is_bound else 0, estimator=estimator if model.method.nll_is_bound else "exact", seq_len=model.seq_len)
    return row


def perplexity_table(models: list[str], data: list[str], **kw: Any) -> list[dict[str, Any]]:
    """One row per (model, data set)."""
    return [evaluate_model_on(m, d, **kw) for m in models for d in data]


def render_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table; diffusion bounds are marked with ``<=``."""
    lines = [
        "| model | kind | data | tokens | ppl | ppl (per-seq mean) | NLL/token ± s.e. |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        le = "<= " if r["bound"] else ""
        lines.append(
            f"| {r['model']} | {r['kind']} | {Path(r['data']).name} | {r['tokens']} | {le}{r['ppl']:.2f} | "
            f"{le}{r['ppl_seq_mean']:.2f} | {le}{r['nll_per_token']:.4f} ± {r['nll_stderr']:.4f} |"
        )
    return "\n".join(lines)


def run_task(args: Any) -> dict[str, Any]:
    """``dlm eval ppl``: the table of every model on every data set."""
    return {"ppl": perplexity_table(args.models, args.data, batch_size=args.batch_size, n_samples=args.n_samples, estimator=args.estimator,
                                    max_sequences=args.max_sequences, seed=args.seed, device=args.device, text_field=args.text_field,
                                    progress=not args.no_progress)}


def render_result(result: dict[str, Any]) -> str:
    return render_table(result["ppl"])


def report_section(rows: list[dict[str, Any]], stem: Any) -> tuple[list[str], list[str]]:
    return ["## Likelihood (zero-shot perplexity)", "", "Per-token aggregation: exp(total NLL / total tokens); diffusion figures are upper bounds (`<=`).", "",
            render_table(rows), ""], []
