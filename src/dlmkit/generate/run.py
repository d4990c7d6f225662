"""``generate``: the one sampling loop over batches and seeds, for every kind, AR included."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from dlmkit.errors import DlmError
from dlmkit.generate.prompt import Prefixes, PrefixRows, Prompt, SourceRows, Spans, Unconditional
from dlmkit.sampling.output import SampleOutput
from dlmkit.runtime import network_autocast
from dlmkit.sampling.autoregressive import generate as ar_generate
from dlmkit.sampling.conditioning import Condition


@torch.no_grad()
def generate(
    model: Any,
    prompt: Prompt | None = None,
    n: int | None = None,
    steps: int = 128,
    batch: int = 16,
    seed: int | torch.Generator = 0,
    *,
    length: int | None = None,
    options: dict[str, Any] | None = None,
    autocast: bool = True,
    progress: bool = False,
    desc: str = "sample",
) -> SampleOutput:
    """``n`` sequences from a loaded model (``DlmModel`` or an HF causal model), ``batch`` at a time.

    ``prompt``: :class:`Unconditional` (default), :class:`Spans`, :class:`Prefixes` or
    :class:`SourceRows` (with the last two ``n`` is the number of rows). ``seed``: an int seeds one generator for the whole call (the
    batches draw from it in turn); a ``torch.Generator`` is drawn from as it stands. ``length``:
    tokens per sequence (default the model's context). ``options``: the kind's sampler options.
    ``autocast``: bf16 autocast of the network on CUDA (see :mod:`dlmkit.runtime`); ``progress``:
    a progress bar over the batches, labelled ``desc``.

    Returns the tokens [n, length] on the CPU, ``nfe`` (network calls of the longest batch; for
    AR source rows the tokens generated) and ``seconds``. AR source rows come back as
    ``src sep target`` padded with the pad token (the target ends at ``eos``).
    """
    prompt = Unconditional() if prompt is None else prompt
    if batch < 1:
        raise DlmError("--batch-size must be at least 1")
    length = length or model.seq_len
    options = dict(options or {})
    dev = model.device
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator(device=dev).manual_seed(seed)
    start = time.perf_counter()
    if isinstance(prompt, SourceRows) and model.method.data_format != "seq2seq":
        if not model.method.causal:
            raise DlmError(f"a {model.kind} model does not map sources to targets (use a diffuseq or ar model trained on pairs)")
        tokens, nfe = _ar_targets(model, prompt.rows, batch, gen, options, autocast)
        return SampleOutput(tokens=tokens, nfe=nfe, seconds=time.perf_counter() - start)
    if isinstance(prompt, Prefixes):
        tokens, nfe = _continue_prefixes(model, prompt.rows, length, steps, batch, gen, options, autocast, progress, desc)
        return SampleOutput(tokens=tokens, nfe=nfe, seconds=time.perf_counter() - start)
    if isinstance(prompt, SourceRows):
        rows = prompt.rows.to(dev)
        n = len(rows)
    elif n is None or n < 1:
        raise DlmError("--n must be at least 1")
    condition = prompt.condition if isinstance(prompt, Spans) else None
    out, nfe = [], 0
    for i in tqdm(range(0, n, batch), desc=desc, disable=not progress, leave=False):
        b = min(batch, n - i)
        if isinstance(prompt, SourceRows):
            condition = rows[i : i + b]
        with _autocast(dev, autocast):
            res = model.method.sample(model.net, b, length, steps=steps, generator=gen, condition=condition, **options)
        out.append(res.tokens.cpu())
        nfe = max(nfe, res.nfe)
    return SampleOutput(tokens=torch.cat(out), nfe=nfe, seconds=time.perf_counter() - start)


def _autocast(device: torch.device, on: bool) -> contextlib.AbstractContextManager:
    return network_autocast(device) if on else contextlib.nullcontext()


def _by_length(rows: list[list[int]], batch: int) -> list[list[int]]:
    """Batches of row indices, rows of one length together (shortest first, in row order)."""
    by_len: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        by_len.setdefault(len(r), []).append(i)
    return [idx[i : i + batch] for _, idx in sorted(by_len.items()) for i in range(0, len(idx), batch)]


def _ar_continue(model: Any, prompts: list[list[int]], total: int, width: int, batch: int, gen: torch.Generator,
                 options: dict[str, Any], autocast: bool, stop_ids: tuple[int, ...] = ()) -> tuple[Tensor, int]:
    """AR after ``eos + prompt`` up to ``total`` tokens with the ``eos``, prompts of equal length
    batched together (no padding); rows [n, width] without the ``eos``, padded after a stop."""
    out = torch.full((len(prompts), width), model.method.specials.pad, dtype=torch.long)
    nfe = 0
    for chunk in _by_length(prompts, batch):
        prompt = torch.tensor([[model.method.specials.eos, *prompts[j]] for j in chunk], dtype=torch.long, device=model.device)
        with _autocast(model.device, autocast):
            toks = ar_generate(model.net, prompt, total - prompt.shape[1], generator=gen, stop_ids=stop_ids, **options)
        nfe = max(nfe, toks.shape[1] - prompt.shape[1])
        out[chunk, : toks.shape[1] - 1] = toks[:, 1:].cpu()
    return out, nfe


def _ar_targets(model: Any, rows: Tensor, batch: int, gen: torch.Generator, options: dict[str, Any], autocast: bool) -> tuple[Tensor, int]:
    """AR on source rows: prompt ``eos src sep`` (eos + row fills the context exactly as in
    training); a batch stops once every row has ended its target (``eos`` or ``sep``)."""
    sp = model.method.specials
    prompts = [[*r[: r.index(sp.sep)], sp.sep] for r in rows.tolist()]
    return _ar_continue(model, prompts, model.seq_len, model.seq_len, batch, gen, options, autocast, stop_ids=(sp.eos, sp.sep))


def _continue_prefixes(model: Any, prefixes: tuple[tuple[int, ...], ...], length: int, steps: int, batch: int, gen: torch.Generator,
                       options: dict[str, Any], autocast: bool, progress: bool, desc: str) -> tuple[Tensor, int]:
    """Each row continued from its own prefix to ``length`` tokens. Diffusion kinds: prefixes of one
    length batched as a :class:`PrefixRows` condition; a batch whose sampler did not hold every
    row's prefix is drawn again one row at a time with a plain prefix :class:`Condition`."""
    rows = [list(p) for p in prefixes]
    if not rows:
        raise DlmError("--n must be at least 1")
    if model.method.causal:
        return _ar_continue(model, rows, length + 1, length, batch, gen, options, autocast)
    out, nfe = torch.empty(len(rows), length, dtype=torch.long), 0
    for chunk in tqdm(_by_length(rows, batch), desc=desc, disable=not progress, leave=False):
        group = [rows[j] for j in chunk]
        P = len(group[0])
        cond = PrefixRows(tuple(range(P)), tuple(group[0]), rows=tuple(map(tuple, group)))
        with _autocast(model.device, autocast):
            res = model.method.sample(model.net, len(chunk), length, steps=steps, generator=gen, condition=cond, **options)
        toks = res.tokens.cpu()
        if toks[:, :P].tolist() != group:  # the sampler ignored per-row prefixes
            singles = []
            for prefix in group:
                with _autocast(model.device, autocast):
                    res = model.method.sample(model.net, 1, length, steps=steps, generator=gen,
                                              condition=Condition.from_spans(length, prefix=prefix), **options)
                singles.append(res.tokens[0].cpu())
            toks = torch.stack(singles)
        out[chunk] = toks
        nfe = max(nfe, res.nfe)
    return out, nfe


def target_ids(model: Any, row: list[int]) -> list[int]:
    """The generated target of one output row of source-row generation."""
    if model.method.data_format == "seq2seq":
        return model.method.target_ids(row)
    sp = model.method.specials
    ids = []
    for t in row[row.index(sp.sep) + 1 :]:
        if t in (sp.eos, sp.sep):
            break
        if t != sp.pad:
            ids.append(t)
    return ids
