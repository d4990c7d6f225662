"""Hugging Face causal LMs (a local folder, a ``.gguf`` file or a folder holding one) as ``ar`` models.

``load_hf_causal(path)`` returns an :class:`HFCausalModel`: the ``ar`` kind's
:class:`~dlmkit.methods.ar.AutoRegressive` method over a :class:`~dlmkit.networks.hf_causal.HFCausalNet`
(GGUF weights are de-quantised by transformers, through the same loader and cache the judges use).
transformers is imported inside the loader only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlmkit.data.tokenizer import TOKENIZER_FILE, Tokenizer
from dlmkit.errors import DlmError
from dlmkit.methods.ar import AutoRegressive
from dlmkit.methods.base import Specials
from dlmkit.networks.hf_causal import HFCausalNet, tokenizer_from_folder, tokenizer_from_transformers


class HFCausalModel(nn.Module):
    """A Hugging Face causal LM as a dlmkit model of kind ``ar`` (same attributes as ``DlmModel``)."""

    def __init__(self, hf_model: nn.Module, tokenizer: Tokenizer, *, name: str, source: dict[str, Any]):
        super().__init__()
        cfg = hf_model.config
        ctx = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 1024
        vocab = int(hf_model.get_output_embeddings().weight.shape[0]) if hf_model.get_output_embeddings() is not None else int(cfg.vocab_size)
        self.net = HFCausalNet(hf_model, int(ctx))
        specials = Specials(eos=tokenizer.eos_id, pad=tokenizer.pad_id, mask=tokenizer.mask_id, sep=tokenizer.sep_id)
        self.method = AutoRegressive(vocab, specials, {})
        self.name_or_path = name
        self.config = {
            "kind": "ar",
            "backbone": {"vocab_size": vocab, "seq_len": int(ctx)},
            "specials": {"eos": specials.eos, "pad": specials.pad, "mask": specials.mask, "sep": specials.sep},
            "options": {},
            "source": source,
        }

    @property
    def kind(self) -> str:
        return "ar"

    @property
    def seq_len(self) -> int:
        return self.net.seq_len

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def load_hf_causal(path: str | Path, device: str | torch.device = "cpu") -> tuple[HFCausalModel, Tokenizer]:
    """A local HF causal-LM folder, a ``.gguf`` file or a folder holding one, as an ``ar`` model."""
    from dlmkit.eval.judges import _load_gguf

    path = Path(path)
    dev = torch.device(device)
    ggufs = [path] if path.is_file() else ([] if (path / "config.json").is_file() else sorted(path.glob("*.gguf")))
    if path.is_file() and path.suffix != ".gguf":
        raise DlmError(f"{path}: a model file must be a .gguf file (or give a model folder)")
    if ggufs:
        hf_model, hf_tok = _load_gguf(ggufs[0], dev)
        tokenizer = tokenizer_from_transformers(hf_tok)
        model = HFCausalModel(hf_model, tokenizer, name=str(path), source={"layout": "gguf", "path": str(ggufs[0])})
        return model.to(dev).eval(), tokenizer
    from transformers import AutoModelForCausalLM

    try:
        hf_model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise DlmError(f"{path}: cannot load a Hugging Face causal LM from this folder ({str(e).splitlines()[0]})") from None
    if (path / TOKENIZER_FILE).is_file():
        tokenizer = tokenizer_from_folder(path)
    else:
        from transformers import AutoTokenizer

        try:
            hf_tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise DlmError(f"{path}: no tokenizer for this model ({str(e).splitlines()[0]})") from None
        tokenizer = tokenizer_from_transformers(hf_tok)
    model = HFCausalModel(hf_model, tokenizer, name=str(path), source={"layout": "hf_causal", "path": str(path), "model_type": hf_model.config.model_type})
    return model.to(dev).eval(), tokenizer
