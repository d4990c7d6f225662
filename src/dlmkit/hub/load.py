"""``load(spec)``: the one answer to "what model is at this path?", for every command, judge and teacher.

``spec`` is one of (first match wins):

* ``smollm2``, a ``.gguf`` file or a folder holding one (no ``config.json``): a Hugging Face
  causal LM de-quantised from GGUF (:mod:`dlmkit.hub.hf`);
* a folder whose ``config.json`` is a released SEDD / MDLM (converted in memory,
  :mod:`dlmkit.hub.released`) or a Hugging Face causal LM;
* a dlmkit checkpoint folder, or a run folder (its newest readable step checkpoint).

Every model comes back in eval mode on ``device`` with its dlmkit :class:`Tokenizer`; a Hugging
Face model is an ``ar`` model over its own network (:class:`~dlmkit.hub.hf.HFCausalModel`).
Judges and teachers are views on what this returns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dlmkit.data.tokenizer import Tokenizer
from dlmkit.errors import DlmError
from dlmkit.hub import hf, released
from dlmkit.hub.checkpoint import load_dlmkit
from dlmkit.hub.model import CONFIG_NAME

SPECS = "a dlmkit run or checkpoint folder, a released SEDD/MDLM folder, a Hugging Face causal-LM folder, a .gguf file or 'smollm2'"


def load(spec: str | os.PathLike, device: str | torch.device = "cpu", *, cache: bool = True) -> tuple[Any, Tokenizer]:
    """The model at ``spec`` and its tokenizer (see the module docstring); never downloads.

    ``cache``: keep a de-quantised GGUF model under ``$DLM_CACHE/judges`` (see :mod:`dlmkit.hub.hf`).
    """
    if hf.is_smollm2(str(spec)):
        return hf.load_hf_causal(str(spec), device, cache=cache)
    p = Path(spec)
    if hf.gguf_file(p) is not None:
        return hf.load_hf_causal(p, device, cache=cache)
    if p.is_dir() and (p / CONFIG_NAME).is_file():
        layout = released.detect_layout(released.read_json_config(p), str(p / CONFIG_NAME))
        if layout in ("sedd", "mdlm"):
            return released.load_released(p, device)
        if layout == "hf_causal":
            return hf.load_hf_causal(p, device, cache=cache)
    if p.is_file():
        raise DlmError(f"{p}: a model file must be a .gguf file (give {SPECS})")
    return load_dlmkit(p, device)
