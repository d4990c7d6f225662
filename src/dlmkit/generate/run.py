"""``generate``: the one sampling loop over batches and seeds, for every kind, AR included."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from dlmkit.errors import DlmError
from dlmkit.generate.prompt import Prompt, SourceRows, Spans, Unconditional
from dlmkit.sampling.output import SampleOutput
from dlmkit.runtime import network_autocast
from dlmkit.sampling.autoregressive import generate as ar_generate


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

    ``prompt``: :class:`Unconditional` (default), :class:`Spans` or :class:`SourceRows` (then
    ``n`` is the number of rows). ``seed``: an int seeds one generator for the whole call (the
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


def _ar_targets(model: Any, rows: Tensor, batch: int, gen: torch.Generator, options: dict[str, Any], autocast: bool) -> tuple[Tensor, int]:
    """AR on source rows: prompt ``eos src sep``, sources of equal length batched together (no
    padding in the prompt); a batch stops once every row has ended its target (``eos`` or ``sep``)."""
    sp = model.method.specials
    L = model.seq_len
    prompts = []
    for r in rows.tolist():
        prompts.append([sp.eos, *r[: r.index(sp.sep)], sp.sep])
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    out = torch.full((len(prompts), L), sp.pad, dtype=torch.long)
    nfe = 0
    for plen, idx in sorted(by_len.items()):
        new = L - plen  # eos + row fills the context exactly as in training
        for i in range(0, len(idx), batch):
            chunk = idx[i : i + batch]
            prompt = torch.tensor([prompts[j] for j in chunk], dtype=torch.long, device=model.device)
            with _autocast(model.device, autocast):
                toks = ar_generate(model.net, prompt, new, generator=gen, stop_ids=(sp.eos, sp.sep), **options)
            nfe = max(nfe, toks.shape[1] - plen)
            out[chunk, : toks.shape[1] - 1] = toks[:, 1:].cpu()
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
