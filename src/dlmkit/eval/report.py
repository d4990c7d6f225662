"""One markdown report from the JSON results of the evaluation commands (``dlm eval report``).

Inputs are JSON files written by ``dlm eval ppl|gen|mauve|harness`` and ``dlm bench latency``
with ``--json`` (the file may hold the command's whole standard output: its last JSON line is
read), or the combined JSON of ``benchmarks/eval_suite.py``. Results are found by their keys
(``ppl``, ``gen``, ``mauve``, ``harness``, ``latency``) at any depth, so several files of the
same kind are merged. The report has one section per kind of result, each a table, and PNG
plots written beside the markdown file: generative perplexity (and unigram entropy) vs
sampling steps, latency vs steps, MAUVE per model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from dlmkit.errors import DlmError
from dlmkit.io import atomic_path, split_lines, write_text

KEYS = ("ppl", "gen", "mauve", "harness", "latency")


def read_result(path: str | Path) -> dict[str, Any]:
    """A JSON file, or the last JSON line of a command's saved output."""
    path = Path(path)
    if not path.is_file():
        raise DlmError(f"{path}: no such results file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DlmError(f"{path}: not a text file (give the JSON written by an eval or bench command with --json)") from None
    try:
        return json.loads(text)
    except ValueError:
        for line in reversed(split_lines(text.strip())):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    raise DlmError(f"{path}: holds no JSON object")


def collect(obj: Any, found: dict[str, list[Any]] | None = None) -> dict[str, list[Any]]:
    """Gather result entries by kind from a parsed JSON tree."""
    found = found if found is not None else {k: [] for k in KEYS}
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in KEYS and isinstance(value, list) and key in ("ppl", "gen"):
                found[key] += [v for v in value if isinstance(v, dict)]
            elif key in ("mauve", "harness") and isinstance(value, dict) and "model" in value:
                found[key].append(value)
            elif key == "latency" and isinstance(value, dict) and "rows" in value:
                found[key].append(value)
            elif key in ("mauve", "harness", "latency") and isinstance(value, list):
                for v in value:
                    collect({key: v}, found)
            elif isinstance(value, (dict, list)):
                collect(value, found)
    elif isinstance(obj, list):
        for v in obj:
            collect(v, found)
    return found


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def plot_gen(rows: list[dict[str, Any]], path: Path) -> Path:
    """Generative perplexity and unigram entropy vs steps; AR rows as horizontal lines."""
    plt = _plt()
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
    _save(fig, path)
    plt.close(fig)
    return path


def plot_mauve(entries: list[dict[str, Any]], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{Path(e['model']).name}\n{e['kind']}" + (f" T={e['steps']}" if e.get("steps") else "") for e in entries]
    ax.bar(range(len(entries)), [e["mauve"] for e in entries], yerr=[e["mauve_std"] for e in entries], capsize=4)
    ax.set_xticks(range(len(entries)), labels, fontsize=7)
    ax.set_ylabel("MAUVE (mean ± std over seeds)")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _fmt(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def render_mauve_table(entries: list[dict[str, Any]]) -> str:
    lines = ["| model | kind | steps | MAUVE | std | seeds | documents (skipped short) | P + C tokens | features |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for e in entries:
        lines.append(
            f"| {e['model']} | {e['kind']} | {_fmt(e.get('steps'), 'd')} | {e['mauve']:.4f} | {e['mauve_std']:.4f} | {len(e['seeds'])} | "
            f"{e['documents']} ({e['skipped_short']}) | {e['prompt_tokens']} + {e['continuation_tokens']} | {e['features']} |"
        )
    return "\n".join(lines)


def write_report(results: Sequence[str | Path | dict[str, Any]], out: str | Path, *, title: str = "dlmkit evaluation report", notes: str = "") -> dict[str, Any]:
    """Write ``out`` (markdown) and its PNG plots; returns the paths and what was found."""
    from dlmkit.eval.tasks.genppl import render_gen_table
    from dlmkit.eval.tasks.harness import render_harness_table
    from dlmkit.eval.tasks.latency import plot_latency, render_latency_table
    from dlmkit.eval.tasks.perplexity import render_table

    found = {k: [] for k in KEYS}
    for r in results:
        collect(r if isinstance(r, dict) else read_result(r), found)
    if not any(found.values()):
        raise DlmError("no evaluation results (ppl, gen, mauve, harness, latency) in the given files")
    out = Path(out)
    stem = out.with_suffix("")
    plots: list[str] = []
    parts = [f"# {title}", ""]
    if notes:
        parts += [notes, ""]
    if found["ppl"]:
        parts += ["## Likelihood (zero-shot perplexity)", "", "Per-token aggregation: exp(total NLL / total tokens); diffusion figures are upper bounds (`<=`).", "", render_table(found["ppl"]), ""]
    if found["harness"]:
        parts += ["## Benchmarks (lm-eval-harness)", "", "Diffusion log-likelihoods are Monte-Carlo ELBO lower bounds; AR log-likelihoods are exact.", "", render_harness_table(found["harness"]), ""]
    if found["mauve"]:
        p = plot_mauve(found["mauve"], Path(f"{stem}_mauve.png"))
        plots.append(str(p))
        parts += ["## MAUVE of prompted continuations", "", render_mauve_table(found["mauve"]), "", f"![MAUVE]({p.name})", ""]
    if found["gen"]:
        p = plot_gen(found["gen"], Path(f"{stem}_genppl.png"))
        plots.append(str(p))
        parts += [
            "## Generative perplexity and diversity of unconditional samples",
            "",
            "Generative perplexity: exp(mean judge NLL per judge token over all samples); the per-sample column is the mean over samples of exp(sample NLL / sample tokens). "
            "Diversity statistics are per sample on the model's own tokens, then averaged.",
            "",
            render_gen_table(found["gen"]),
            "",
            f"![generative perplexity]({p.name})",
            "",
        ]
    for k, lat in enumerate(found["latency"]):
        p = Path(plot_latency(lat, str(Path(f"{stem}_latency{k or ''}.png"))))
        plots.append(str(p))
        parts += ["## Sampling latency" + (f" ({k + 1})" if len(found["latency"]) > 1 else ""), "", render_latency_table(lat), "", f"![latency]({p.name})", ""]
    write_text(out, "\n".join(parts))
    return {"report": str(out), "plots": plots, "found": {k: len(v) for k, v in found.items()}}
