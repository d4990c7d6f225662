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
from dlmkit.generate.prompt import SourceRows
from dlmkit.generate.run import generate, target_ids
from dlmkit.eval.metrics.mbr import mbr_decode
from dlmkit.hub.checkpoint import find_run_config
from dlmkit.hub.load import load as load_model
from dlmkit.io import jsonl_records, write_text


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

    cfg = find_run_config(model_path)
    if cfg is None:
        return 0
    try:
        tree = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
        return int(((tree.get("data") or {}).get("max_src_len")) or 0)
    except Exception:  # a foreign config.yaml: fall back to the default rule
        return 0


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
    progress: bool = False,
) -> dict[str, Any]:
    """``candidates`` decoded targets per source from a loaded ``DlmModel`` (``progress``: a bar
    over each candidate's batches).

    AR: greedy when ``temperature == 0`` (the default for one candidate), options ``temperature``,
    ``top_k``, ``top_p``, ``use_cache``. Returns ``candidates`` ([source][k] texts), ``nfe``
    (network calls per batch; for AR the number of generated tokens), ``seconds`` and
    ``n_src_truncated``.
    """
    if not sources:
        raise DlmError("no sources to generate from")
    if candidates < 1:
        raise DlmError("--candidates must be at least 1")
    if batch_size < 1:
        raise DlmError("--batch-size must be at least 1")
    options = dict(options or {})
    if model.method.data_format != "seq2seq" and model.kind != "ar":
        raise DlmError(f"a {model.kind} model does not map sources to targets (use a diffuseq or ar model trained on pairs)")
    if model.kind == "ar":
        bad = set(options) - {"temperature", "top_k", "top_p", "use_cache"}
        if bad:
            raise DlmError(f"the ar model takes no option {', '.join(sorted(bad))} (temperature, top_k, top_p)")
        options = {"temperature": 0.0 if candidates == 1 else 1.0, **options}
    sp = model.method.specials
    src_ids = tokenizer.encode_batch(list(sources))
    rows, stats = frame_rows(src_ids, None, seq_len=model.seq_len, sep=sp.sep, eos=sp.eos, pad=sp.pad, max_src_len=max_src_len)
    prompt = SourceRows(torch.from_numpy(rows))
    out: list[list[str]] = [[] for _ in sources]
    nfe = 0
    start = time.perf_counter()
    for k in range(candidates):  # candidate k draws from seed + k
        res = generate(model, prompt, steps=steps, batch=batch_size, seed=seed + k, options=options, autocast=False,
                       progress=progress, desc=f"candidate {k + 1}/{candidates}")
        nfe = max(nfe, res.nfe)
        texts = tokenizer.decode_batch([target_ids(model, r) for r in res.tokens.tolist()])
        for i, text in enumerate(texts):
            out[i].append(text)
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
    progress: bool = False,
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
                           batch_size=batch_size, max_src_len=cap, options=options, progress=progress)
    cands = res.pop("candidates")
    if mbr:
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
