"""Generating targets for sources: the library side of ``dlm sample RUN --src-file FILE``.

Works for the seq2seq kinds (``diffuseq``: the target region after ``src sep`` is denoised by
DDIM/DDPM) and for the AR baseline trained on ``src sep trg eos`` rows (the target is generated
after the prompt ``eos src sep`` with its KV cache, until ``eos``). ``candidates`` samples per
source (candidate ``k`` draws from seed ``seed + k``), optionally reduced to one by MBR.

Sources are framed by the same rule as training rows (``dlmkit.data.seq2seq_blocks``): the
source cap is read from the run's ``config.yaml`` (``data.max_src_len``) when the model lives
in a run folder, else ``(seq_len - 2) // 2``; cut sources are counted in the result.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from dlmkit.data.seq2seq_blocks import frame_rows, source_cap
from dlmkit.errors import DlmError
from dlmkit.runtime import resolve_device
from dlmkit.io import jsonl_records
from dlmkit.hub.load import load as load_model


def read_sources(path: str | Path) -> tuple[list[str], list[str] | None]:
    """Sources (and references when present) from a file.

    ``.jsonl``: DiffuSeq data ``{"src", "trg"}`` or decoder output ``{"source", "reference"}``;
    anything else: one source a line. Blank lines are skipped in jsonl, kept as errors in text.
    """
    p = Path(path)
    if not p.is_file():
        raise DlmError(f"source file {p} not found")
    text = p.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DlmError(f"source file {p} is empty")
    if p.suffix != ".jsonl":
        lines = text.removesuffix("\n").split("\n")
        if any(not line.strip() for line in lines):
            raise DlmError(f"{p}: blank line {next(i for i, s in enumerate(lines, 1) if not s.strip())} (one source a line)")
        return lines, None
    sources, refs = [], []
    for lineno, row in jsonl_records(p, text):
        src = row.get("src", row.get("source"))
        if not isinstance(src, str):
            raise DlmError(f"{p}:{lineno}: no string field 'src' (or 'source')")
        sources.append(src)
        ref = row.get("trg", row.get("reference"))
        refs.append(ref if isinstance(ref, str) else None)
    has_refs = all(r is not None for r in refs)
    return sources, ([r for r in refs if r is not None] if has_refs else None)


def run_max_src_len(model_path: str | Path) -> int:
    """``data.max_src_len`` of the run a checkpoint belongs to (0 when not found)."""
    import yaml

    from dlmkit.hub.checkpoint import find_run_config

    cfg = find_run_config(model_path)
    if cfg is None:
        return 0
    try:
        tree = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
        return int(((tree.get("data") or {}).get("max_src_len")) or 0)
    except Exception:  # a foreign config.yaml: fall back to the default rule
        return 0


def _decode_targets(method: Any, tokenizer: Any, rows: torch.Tensor) -> list[str]:
    return tokenizer.decode_batch([method.target_ids(r) for r in rows.tolist()])


@torch.no_grad()
def generate_targets(
    model: Any,
    tokenizer: Any,
    sources: Sequence[str],
    *,
    steps: int = 100,
    candidates: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    max_src_len: int = 0,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``candidates`` decoded targets per source from a loaded ``DlmModel``.

    Returns ``candidates`` ([source][k] texts), ``nfe`` (network calls per batch; for AR the
    number of generated tokens), ``seconds`` and ``n_src_truncated``.
    """
    if not sources:
        raise DlmError("no sources to generate from")
    if candidates < 1:
        raise DlmError("--candidates must be at least 1")
    if batch_size < 1:
        raise DlmError("--batch-size must be at least 1")
    options = dict(options or {})
    L = model.seq_len
    sp = model.method.specials
    src_ids = tokenizer.encode_batch(list(sources))
    rows, stats = frame_rows(src_ids, None, seq_len=L, sep=sp.sep, eos=sp.eos, pad=sp.pad, max_src_len=max_src_len)
    rows_t = torch.from_numpy(rows).to(model.device)
    out: list[list[str]] = [[] for _ in sources]
    nfe = 0
    start = time.perf_counter()
    if model.method.data_format == "seq2seq":
        for k in range(candidates):
            gen = torch.Generator(device=model.device).manual_seed(seed + k)
            for i in range(0, len(rows_t), batch_size):
                batch = rows_t[i : i + batch_size]
                res = model.method.sample(model.net, len(batch), L, steps=steps, generator=gen, condition=batch, **options)
                nfe = max(nfe, res.nfe)
                for j, text in enumerate(_decode_targets(model.method, tokenizer, res.tokens.cpu())):
                    out[i + j].append(text)
    elif model.kind == "ar":
        nfe = _ar_generate(model, tokenizer, rows, out, candidates=candidates, seed=seed, batch_size=batch_size, options=options)
    else:
        raise DlmError(f"a {model.kind} model does not map sources to targets (use a diffuseq or ar model trained on pairs)")
    seconds = time.perf_counter() - start
    return {
        "candidates": out,
        "nfe": nfe,
        "seconds": seconds,
        "seconds_per_sample": seconds / (len(sources) * candidates),
        "n_src_truncated": stats.n_src_truncated,
        "src_tokens_cut": stats.src_tokens_cut,
        "max_src_len": stats.max_src_len,
    }


def _ar_generate(model: Any, tokenizer: Any, rows: Any, out: list[list[str]], *, candidates: int, seed: int,
                 batch_size: int, options: dict[str, Any]) -> int:
    """AR: prompt ``eos src sep``, sources of equal length batched together (no padding in the
    prompt), greedy when ``temperature == 0`` (the default for one candidate); a batch stops once
    every row has ended its target (``eos`` or ``sep``)."""
    from dlmkit.sampling.autoregressive import generate

    bad = set(options) - {"temperature", "top_k", "top_p", "use_cache"}
    if bad:
        raise DlmError(f"the ar model takes no option {', '.join(sorted(bad))} (temperature, top_k, top_p)")
    sp = model.method.specials
    L = model.seq_len
    opts = {"temperature": 0.0 if candidates == 1 else 1.0, **options}
    prompts = []
    for r in rows.tolist():
        n_src = r.index(sp.sep)
        prompts.append([sp.eos, *r[:n_src], sp.sep])
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    nfe = 0
    for k in range(candidates):
        gen = torch.Generator(device=model.device).manual_seed(seed + k)
        for plen, idx in sorted(by_len.items()):
            new = L - plen  # eos + row fills the context exactly as in training
            for i in range(0, len(idx), batch_size):
                chunk = idx[i : i + batch_size]
                prompt = torch.tensor([prompts[j] for j in chunk], dtype=torch.long, device=model.device)
                toks = generate(model.net, prompt, new, generator=gen, stop_ids=(sp.eos, sp.sep), **opts)[:, plen:]
                nfe = max(nfe, toks.shape[1])
                for j, seq in zip(chunk, toks.tolist()):
                    ids = []
                    for t in seq:
                        if t in (sp.eos, sp.sep):
                            break
                        if t != sp.pad:
                            ids.append(t)
                    out[j].append(tokenizer.decode(ids))
    return nfe


def sample_seq2seq(
    model_path: str,
    src_file: str,
    *,
    steps: int = 100,
    candidates: int = 1,
    mbr: bool = False,
    seed: int = 0,
    batch_size: int = 32,
    device: str | None = None,
    options: dict[str, Any] | None = None,
    out: str | None = None,
    max_src_len: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Load a model, generate for every source of ``src_file`` and (with ``out``) write the result.

    ``out`` gets DiffuSeq-style jsonl ``{"source", "recover", "reference"[, "candidates"]}`` when
    the source file has references or ``out`` ends in ``.jsonl``; else one output a line.
    ``recover`` is the MBR choice among the candidates with ``mbr``, else candidate 0.
    """
    if mbr and candidates < 2:
        raise DlmError("--mbr needs --candidates of at least 2")
    sources, refs = read_sources(src_file)
    if limit:
        sources, refs = sources[:limit], (refs[:limit] if refs else None)
    model, tokenizer = load_model(model_path, resolve_device(device))
    cap = run_max_src_len(model_path) if max_src_len is None else max_src_len
    source_cap(model.seq_len, cap)  # validate before sampling
    res = generate_targets(model, tokenizer, sources, steps=steps, candidates=candidates, seed=seed,
                           batch_size=batch_size, max_src_len=cap, options=options)
    cands = res.pop("candidates")
    if mbr:
        from dlmkit.eval.metrics.mbr import mbr_decode

        recover = mbr_decode(cands)
    else:
        recover = [c[0] for c in cands]
    result = {
        "model": str(model_path),
        "kind": model.kind,
        "src_file": str(src_file),
        "n_sources": len(sources),
        "candidates_per_source": candidates,
        "mbr": mbr,
        "steps": steps if model.method.data_format == "seq2seq" else None,
        "seed": seed,
        **res,
        "recover": recover,
    }
    if out:
        from dlmkit.io import write_text

        if refs is not None or str(out).endswith(".jsonl"):
            lines = []
            for i, src in enumerate(sources):
                row: dict[str, Any] = {"source": src, "recover": recover[i], "reference": refs[i] if refs else ""}
                if candidates > 1:
                    row["candidates"] = cands[i]
                lines.append(json.dumps(row, ensure_ascii=False))
            write_text(out, "\n".join(lines) + "\n")
        else:
            write_text(out, "".join(r.replace("\n", " ") + "\n" for r in recover))
        result["out"] = str(out)
    return result
