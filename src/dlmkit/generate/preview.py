"""A few decoded samples for a run folder's ``samples/step_N.txt`` (the training loop's previews)."""

from __future__ import annotations

from typing import Any

import torch

from dlmkit.generate.prompt import SourceRows, Unconditional
from dlmkit.generate.run import generate, target_ids


def preview_texts(model: Any, tokenizer: Any, *, n: int, length: int, steps: int, generator: torch.Generator,
                  blocks: Any = None, order: Any = None) -> list[str]:
    """``n`` unconditional samples for LM kinds; for seq2seq kinds, targets generated for the
    first ``n`` validation sources (``blocks.batch(order[:n])``), shown with source and reference."""
    method = model.method
    if method.data_format != "seq2seq":
        out = generate(model, Unconditional(), n, steps, n, generator, length=length, autocast=False)
        return tokenizer.decode_batch(out.tokens.tolist())
    if blocks is None or order is None or len(order) == 0:
        return []
    idx = [int(i) for i in order[:n]]
    rows = blocks.batch(idx)
    mask = method.target_mask(rows)
    cond = torch.where(mask, torch.full_like(rows, method.specials.pad), rows)
    out = generate(model, SourceRows(cond), steps=min(steps, method.T), batch=len(idx), seed=generator, autocast=False)
    texts = []
    for j, i in enumerate(idx):
        hyp = tokenizer.decode(target_ids(model, out.tokens[j].tolist()))
        texts.append(f"source:    {blocks.sources[i]}\nreference: {blocks.targets[i]}\ngenerated: {hyp}")
    return texts
