"""Left-to-right generation for causal models, with or without a KV cache."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dlmkit.sampling.categorical import sample_categorical, top_k_top_p


@torch.no_grad()
def generate(
    net: nn.Module,
    prompt: Tensor,
    new_tokens: int,
    *,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    use_cache: bool = True,
    stop_ids: tuple[int, ...] = (),
) -> Tensor:
    """Extend ``prompt`` [B, P] by ``new_tokens`` tokens.

    ``temperature=0`` is greedy decoding; ``top_k`` > 0 and ``top_p`` < 1 restrict the draw to the
    k most likely tokens and to the nucleus of mass p. Draws are made in float64. With
    ``use_cache`` the network sees each token once (the prompt in one pass, then one token a
    step); without it, the whole prefix is recomputed each step. Both give the same tokens.
    """
    if new_tokens < 0:
        raise ValueError("new_tokens must be >= 0")
    tokens = prompt
    cache = net.new_cache(prompt.shape[0]) if use_cache else None
    step_input = prompt
    stop = torch.tensor(stop_ids, dtype=torch.long, device=prompt.device)
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    for _ in range(new_tokens):
        logits = net(step_input if use_cache else tokens, cache=cache)[:, -1]
        if temperature == 0:
            nxt = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(top_k_top_p(logits.double() / temperature, top_k, top_p), dim=-1)
            nxt = sample_categorical(probs, generator)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        step_input = nxt[:, None]
        if len(stop_ids):
            done |= torch.isin(nxt, stop)
            if bool(done.all()):
                break
    return tokens
