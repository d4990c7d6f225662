"""A dlmkit model: one network plus the kind that trains, samples and scores it.

Saved as a Hugging Face-style folder: ``config.json`` (the kind, the backbone shape, the special
token ids), ``model.safetensors`` and the tokenizer files, so ``DlmModel.from_pretrained(folder)``
and ``save_pretrained``/``push_to_hub`` work through ``huggingface_hub``'s ``ModelHubMixin``.
Loading never unpickles: weights come from safetensors only, strictly, and a foreign or
truncated file is a one-line :class:`DlmError` that names it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from dlmkit.data.tokenizer import SPECIALS_FILE, TOKENIZER_FILE, Tokenizer
from dlmkit.errors import DlmError
from dlmkit.methods.base import Method, Specials, get_method_class
from dlmkit.networks.transformer import BackboneConfig

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class DlmModel(nn.Module, PyTorchModelHubMixin, library_name="dlmkit", tags=["diffusion-language-model"]):
    """Network + model kind, built from a plain JSON-able ``config`` dict.

    ``config`` holds ``kind``, ``backbone`` (a :class:`BackboneConfig` as a dict), ``specials``
    (token ids), ``options`` (the kind's options, e.g. the noise schedule) and ``dlmkit_format``.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.tokenizer: Any = None  # a dlmkit Tokenizer, written by save_pretrained / push_to_hub
        known = {f.name for f in fields(BackboneConfig)}
        unknown = set(config["backbone"]) - known
        if unknown:
            raise DlmError(f"model config has unknown backbone keys: {', '.join(sorted(unknown))}")
        bcfg = BackboneConfig(**config["backbone"])
        self.method: Method = get_method_class(config["kind"])(bcfg.vocab_size, Specials(**config["specials"]), config.get("options"))
        self.net = self.method.build_network(bcfg)

    @property
    def kind(self) -> str:
        return self.config["kind"]

    @property
    def seq_len(self) -> int:
        return self.config["backbone"]["seq_len"]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @classmethod
    def build(cls, kind: str, backbone: BackboneConfig, specials: Specials, options: dict[str, Any] | None = None) -> "DlmModel":
        """A fresh model of ``kind`` whose attention mode and conditioning follow the kind."""
        method_cls = get_method_class(kind)
        backbone.causal = method_cls.causal
        backbone.time_conditioned = method_cls.time_conditioned
        return cls(
            {
                "dlmkit_format": FORMAT_VERSION,
                "kind": kind,
                "backbone": asdict(backbone),
                "specials": asdict(specials),
                "options": dict(options or {}),
            }
        )

    def save_pretrained(self, save_directory: str | Path, *, tokenizer: Any = None, **kwargs: Any) -> Any:
        """Write a complete model folder: ``config.json``, ``model.safetensors``, a model card and
        the tokenizer (``tokenizer.json``, ``dlm_tokenizer.json``, ``tokenizer_config.json``,
        ``special_tokens_map.json``), loadable by ``from_pretrained``, ``dlmkit.hub.load.load``, every
        ``dlm`` command and transformers' ``AutoTokenizer``. ``tokenizer`` is needed unless the
        model came from ``load``/``from_pretrained``, which attach theirs."""
        if tokenizer is not None:
            self.tokenizer = tokenizer
        if self.tokenizer is None:
            raise DlmError("save_pretrained needs the model's tokenizer: model.save_pretrained(folder, tokenizer=tok)")
        return super().save_pretrained(save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)  # model.safetensors
        self.tokenizer.save(save_directory)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", **kwargs: Any) -> "DlmModel":
        """Load from a local folder (or, when the user asks for a hub id, its safetensors and
        tokenizer files), with its tokenizer attached as ``model.tokenizer``."""
        folder = Path(model_id)
        if not folder.is_dir():
            from huggingface_hub import hf_hub_download

            def fetch(name: str) -> Path:
                return Path(hf_hub_download(repo_id=model_id, filename=name, revision=kwargs.get("revision"), cache_dir=kwargs.get("cache_dir"),
                                            token=kwargs.get("token"), local_files_only=kwargs.get("local_files_only", False)))

            from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

            weights = fetch(WEIGHTS_NAME)
            try:  # a repository pushed without its tokenizer still loads (model.tokenizer stays None)
                folder = fetch(TOKENIZER_FILE).parent
                fetch(SPECIALS_FILE)
            except (EntryNotFoundError, LocalEntryNotFoundError):
                folder = weights.parent
        else:
            weights = folder / WEIGHTS_NAME
        model = cls(kwargs["config"])
        load_weights(model, weights)
        if (folder / TOKENIZER_FILE).is_file() and (folder / SPECIALS_FILE).is_file():
            model.tokenizer = Tokenizer.load(folder)
        return model.to(map_location).eval()


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a dlmkit checkpoint folder, with one-line errors for anything else."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise DlmError(f"{folder}: no {CONFIG_NAME}: not a model checkpoint folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DlmError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or "dlmkit_format" not in config:
        raise DlmError(f"{path}: not a dlmkit checkpoint (no 'dlmkit_format' field)")
    if config["dlmkit_format"] > FORMAT_VERSION:
        raise DlmError(f"{path}: written by a newer dlmkit (format {config['dlmkit_format']}); upgrade dlmkit")
    return config


def read_weights(module: nn.Module, path: str | os.PathLike, *, prefix: str = "") -> dict[str, torch.Tensor]:
    """Read safetensors weights for ``module`` and check them against it (names and shapes).

    Tied weights are stored once (safetensors drops aliases): the alias is filled from its twin.
    Errors name the file: missing, unreadable or truncated, or belonging to another model.
    """
    path = Path(path)
    if not path.is_file():
        raise DlmError(f"{path}: missing weights file")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DlmError(f"{path}: unreadable or truncated weights file ({e})") from None
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = module.state_dict()
    for name, tensor in own.items():
        if name not in state:
            twin = next((n for n, t in own.items() if n in state and t.data_ptr() == tensor.data_ptr()), None)
            if twin is not None:
                state[name] = state[twin]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise DlmError(f"{path}: weights belong to another model ({detail})")
    for name, tensor in state.items():
        if tuple(own[name].shape) != tuple(tensor.shape):
            raise DlmError(f"{path}: weights belong to another model ({name} has shape {tuple(tensor.shape)}, expected {tuple(own[name].shape)})")
    return state


def load_weights(module: nn.Module, path: str | os.PathLike, *, prefix: str = "") -> None:
    """Load safetensors weights into ``module`` strictly (see :func:`read_weights`)."""
    module.load_state_dict(read_weights(module, path, prefix=prefix), strict=True)
