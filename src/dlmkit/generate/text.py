"""Sampling text from a saved model: the library side of ``dlm sample``."""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from dlmkit.errors import DlmError
from dlmkit.runtime import network_autocast
from dlmkit.runtime import resolve_device
from dlmkit.sampling.conditioning import Condition
from dlmkit.hub.load import load as load_model


def build_condition(
    tokenizer: Any,
    length: int,
    prefix: str | None = None,
    suffix: str | None = None,
    infill: Sequence[tuple[int, str]] = (),
) -> Condition | None:
    """Tokenise text conditions and place them: prefix at the start, suffix at the end, infill
    spans from their token position. ``None`` when nothing is held fixed."""
    pre = tokenizer.encode(prefix) if prefix else []
    suf = tokenizer.encode(suffix) if suffix else []
    spans = [(pos, tokenizer.encode(text)) for pos, text in infill]
    held = len(pre) + len(suf) + sum(len(ids) for _, ids in spans)
    if held == 0:
        return None
    if held > length:
        raise DlmError(f"the condition holds {held} tokens but the sample has only {length}")
    for pos, ids in spans:
        if pos + len(ids) > length:
            raise DlmError(f"infill at token {pos} ({len(ids)} tokens) runs past the sample length {length}")
    return Condition.from_spans(length, pre, suf, spans)


@torch.no_grad()
def sample_texts(
    model_path: str,
    *,
    n: int = 4,
    length: int | None = None,
    steps: int = 128,
    seed: int = 0,
    prefix: str | None = None,
    suffix: str | None = None,
    infill: Sequence[tuple[int, str]] = (),
    batch_size: int = 16,
    device: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Draw ``n`` samples from a model or run folder and decode them.

    Returns ``texts``, ``token_ids``, ``nfe`` (network calls per batch), ``seconds`` and the
    settings used.
    """
    if n < 1:
        raise DlmError("--n must be at least 1")
    dev = resolve_device(device)
    model, tokenizer = load_model(model_path, dev)
    length = length or model.seq_len
    if length > model.seq_len:
        raise DlmError(f"a sample of {length} tokens is longer than the model's context ({model.seq_len})")
    options = dict(options or {})
    unknown = set(options) - set(model.method.extra_options)
    if unknown:
        raise DlmError(f"the {model.kind} model takes no option {', '.join(sorted(unknown))} (it takes: {', '.join(model.method.extra_options) or 'none'})")
    condition = build_condition(tokenizer, length, prefix, suffix, infill)
    if condition is not None:
        condition.check(length, model.method.vocab_size, model.method.specials.mask)
    gen = torch.Generator(device=dev).manual_seed(seed)
    tokens, nfe = [], 0
    start = time.perf_counter()
    for i in range(0, n, batch_size):
        with network_autocast(dev):
            out = model.method.sample(model.net, min(batch_size, n - i), length, steps=steps, generator=gen, condition=condition, **options)
        tokens.append(out.tokens.cpu())
        nfe = max(nfe, out.nfe)
    seconds = time.perf_counter() - start
    ids = torch.cat(tokens).tolist()
    return {
        "model": str(model_path),
        "kind": model.kind,
        "texts": tokenizer.decode_batch(ids),
        "token_ids": ids,
        "length": length,
        "steps": steps,
        "nfe": nfe,
        "seed": seed,
        "seconds": seconds,
    }
