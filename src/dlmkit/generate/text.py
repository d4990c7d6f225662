"""Sampling text from a saved model: the library side of ``dlm sample``."""

from __future__ import annotations

from typing import Any, Sequence

from dlmkit.errors import DlmError
from dlmkit.generate.prompt import Spans
from dlmkit.generate.run import generate
from dlmkit.hub.load import load as load_model
from dlmkit.runtime import resolve_device


def sample_texts(
    model_path: str,
    *,
    n: int = 4,
    length: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    prefix: str | None = None,
    suffix: str | None = None,
    infill: Sequence[tuple[int, str]] = (),
    batch_size: int = 16,
    device: str | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Draw ``n`` samples from a model or run folder and decode them (``progress``: a bar over the batches).

    ``steps``: by default the ``recommended_steps`` a distilled model records in its config
    (e.g. an SDTT student's), else 128. Returns ``texts``, ``token_ids``, ``nfe`` (network calls
    per batch), ``seconds`` and the settings used.
    """
    if n < 1:
        raise DlmError("--n must be at least 1")
    dev = resolve_device(device)
    model, tokenizer = load_model(model_path, dev)
    length = length or model.seq_len
    config = getattr(model, "config", None)
    steps = steps or (config.get("recommended_steps") if isinstance(config, dict) else None) or 128
    if length > model.seq_len:
        raise DlmError(f"a sample of {length} tokens is longer than the model's context ({model.seq_len})")
    options = dict(options or {})
    unknown = set(options) - set(model.method.extra_options)
    if unknown:
        raise DlmError(f"the {model.kind} model takes no option {', '.join(sorted(unknown))} (it takes: {', '.join(model.method.extra_options) or 'none'})")
    prompt = Spans.from_text(tokenizer, length, prefix, suffix, infill)
    if isinstance(prompt, Spans):
        prompt.condition.check(length, model.method.vocab_size, model.method.specials.mask)
    out = generate(model, prompt, n, steps, batch_size, seed, length=length, options=options, progress=progress, desc="sample")
    ids = out.tokens.tolist()
    return {
        "model": str(model_path),
        "kind": model.kind,
        "texts": tokenizer.decode_batch(ids),
        "token_ids": ids,
        "length": length,
        "steps": steps,
        "nfe": out.nfe,
        "seed": seed,
        "seconds": out.seconds,
    }
