"""Hugging Face causal LMs as dlmkit causal networks, and their tokenizers.

:class:`HFCausalNet` puts a transformers ``AutoModelForCausalLM`` behind dlmkit's causal network
interface; :mod:`dlmkit.hub.hf` loads one (a folder, a ``.gguf`` file) as an ``ar`` model, so
every command that takes an AR checkpoint takes such a model too.

* ``nll`` is exact: the block is scored behind the start token (see below), every token given
  all earlier ones, in one forward pass.
* Sampling uses the model's own KV cache (``past_key_values``): the prompt in one pass, then one
  token a step, with dlmkit's float64 categorical draws.
* The tokenizer is the model's own, as a dlmkit :class:`~dlmkit.data.tokenizer.Tokenizer`
  (kind ``hf`` from ``tokenizer.json`` where the folder has one). Its end-of-text role (the
  start token of every block, as the AR kind uses it) is chosen as the judges choose theirs:
  ``<|endoftext|>`` when the vocabulary has it, else the BOS, else the EOS token. A ``<|mask|>``
  token is appended when the vocabulary has none (dlmkit tokenizers own a mask role); the
  network never produces it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer
from torch import Tensor, nn

from dlmkit.data.tokenizer import Tokenizer, declared_specials, read_hf_tokenizer
from dlmkit.errors import DlmError


class HFCache:
    """The HF model's own ``past_key_values`` plus the number of positions it holds."""

    def __init__(self, max_len: int):
        self.past: Any = None
        self.length = 0
        self.max_len = max_len


class HFCausalNet(nn.Module):
    """A transformers causal LM behind dlmkit's causal network interface.

    ``net(ids)`` -> float32 logits [B, L, V]; ``net(ids, cache=c)`` reads and extends the KV
    cache ``c`` from :meth:`new_cache` (positions continue from ``c.length``).
    """

    def __init__(self, hf_model: nn.Module, seq_len: int):
        super().__init__()
        self.hf = hf_model
        self.seq_len = seq_len

    def new_cache(self, batch: int, *, dtype: torch.dtype | None = None) -> HFCache:
        return HFCache(self.seq_len)

    def forward(self, ids: Tensor | None = None, *, cache: HFCache | None = None, attn_mask: Tensor | None = None, **unused: Any) -> Tensor:
        if ids is None:
            raise ValueError("a Hugging Face causal LM takes token ids")
        if attn_mask is not None:
            raise ValueError("a Hugging Face causal LM is always causal: no custom attention mask")
        start = cache.length if cache is not None else 0
        if start + ids.shape[1] > self.seq_len:
            raise ValueError(f"sequence of {start + ids.shape[1]} tokens is longer than the model's context ({self.seq_len})")
        if cache is None:
            return self.hf(input_ids=ids, use_cache=False).logits.float()
        out = self.hf(input_ids=ids, past_key_values=cache.past, use_cache=True)
        cache.past = out.past_key_values
        cache.length += ids.shape[1]
        return out.logits.float()


def tokenizer_from_transformers(hf_tok: Any) -> Tokenizer:
    """A dlmkit tokenizer from a transformers fast tokenizer (its own vocabulary and specials)."""
    backend = getattr(hf_tok, "backend_tokenizer", None)
    if backend is None:
        raise DlmError("the model's tokenizer is not a fast tokenizer (no tokenizer.json); dlmkit needs one")
    tok = HFTokenizer.from_str(backend.to_str())
    declared = {
        "eos": getattr(hf_tok, "eos_token", None),
        "bos": getattr(hf_tok, "bos_token", None),
        "pad": getattr(hf_tok, "pad_token", None),
        "mask": getattr(hf_tok, "mask_token", None),
    }
    return _with_roles(tok, {k: v for k, v in declared.items() if isinstance(v, str)})


def _with_roles(tok: HFTokenizer, declared: dict[str, str]) -> Tokenizer:
    def present(*names: str | None) -> str | None:
        return next((n for n in names if n and tok.token_to_id(n) is not None), None)

    start = present("<|endoftext|>", declared.get("bos"), declared.get("eos"))
    if start is None:
        raise DlmError("the model's tokenizer has no <|endoftext|>, BOS or EOS token to start sequences with")
    roles = {
        "eos": start,
        "pad": present(declared.get("pad")) or start,
        "mask": present(declared.get("mask"), "<|mask|>", "<mask>", "[MASK]") or "<|mask|>",
        "sep": start,
    }
    tok.add_special_tokens([AddedToken(roles[r], special=True, normalized=False) for r in ("eos", "pad", "mask", "sep")])
    return Tokenizer(tok, roles)


def tokenizer_from_folder(folder: Path) -> Tokenizer:
    """Kind ``hf``: the folder's ``tokenizer.json`` and the specials it declares (start token as above)."""
    return _with_roles(read_hf_tokenizer(folder), declared_specials(folder))


def is_causal_lm_config(config: dict[str, Any]) -> bool:
    """Does a transformers ``config.json`` describe a causal LM that AutoModelForCausalLM loads?"""
    archs = config.get("architectures") or []
    if any(isinstance(a, str) and (a.endswith("ForCausalLM") or a.endswith("LMHeadModel")) for a in archs):
        return True
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        return False
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:
        return False
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
