"""Checkpoint folders: the model (loadable on its own) plus the state that resumes training exactly.

Layout of one checkpoint folder::

    config.json  model.safetensors  tokenizer.json  dlm_tokenizer.json   # the model, for from_pretrained
    train_state.safetensors  train_state.json                            # optimiser, EMA, RNGs, data position

``model.safetensors`` holds the inference weights (the EMA when enabled); the raw weights then
live in the training state. A folder is written under a temporary name and renamed when
complete, so a kill leaves either the old set of checkpoints or the new one, never half a folder.
Nothing here unpickles: tensors are safetensors, the rest is JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model

from dlmkit.data.tokenizer import Tokenizer
from dlmkit.errors import DlmError
from dlmkit.models.model import CONFIG_NAME, WEIGHTS_NAME, DlmModel, load_weights, read_config

STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"
STEP_DIR = re.compile(r"^step_(\d+)$")


def write_model_folder(folder: Path, model: DlmModel, tokenizer: Tokenizer, weights: dict[str, torch.Tensor] | None = None) -> None:
    """Write config, weights (``model``'s own, or ``weights``) and tokenizer into an existing folder."""
    (folder / CONFIG_NAME).write_text(json.dumps(model.config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if weights is None:
        save_model(model, str(folder / WEIGHTS_NAME))
    else:
        save_file(_drop_aliases(weights), str(folder / WEIGHTS_NAME))
    tokenizer.save(folder)


def _drop_aliases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep one name per storage (tied weights), contiguous CPU tensors, as safetensors needs."""
    out, seen = {}, set()
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            out[name] = tensor.detach().contiguous().cpu()
    return out


def publish_folder(tmp: Path, final: Path) -> None:
    """Move a completed temporary folder onto ``final``, replacing an older one."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def save_checkpoint(
    folder: Path,
    model: DlmModel,
    tokenizer: Tokenizer,
    weights: dict[str, torch.Tensor] | None = None,
    state_tensors: dict[str, torch.Tensor] | None = None,
    state_json: dict[str, Any] | None = None,
) -> None:
    """Atomically write a checkpoint folder (model + optional training state)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write_model_folder(tmp, model, tokenizer, weights)
        if state_tensors is not None:
            save_file({k: v.detach().contiguous().cpu() for k, v in state_tensors.items()}, str(tmp / STATE_TENSORS))
            (tmp / STATE_JSON).write_text(json.dumps(state_json or {}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        publish_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def step_folders(run_dir: Path) -> list[Path]:
    """The run's ``checkpoints/step_N`` folders, newest first."""
    ckpt = run_dir / "checkpoints"
    if not ckpt.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True)]


def prune(run_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step checkpoints (``best`` is kept apart)."""
    for old in step_folders(run_dir)[max(keep_last, 1) :]:
        shutil.rmtree(old, ignore_errors=True)


def load_train_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint's training state; a truncated or missing file is a :class:`DlmError`."""
    tensors_path, json_path = folder / STATE_TENSORS, folder / STATE_JSON
    try:
        tensors = load_file(str(tensors_path))
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (SafetensorError, OSError, ValueError) as e:
        raise DlmError(f"{folder}: unreadable training state ({type(e).__name__}: {e})") from None
    return tensors, meta


def find_run_config(path: str | os.PathLike) -> Path | None:
    """The ``config.yaml`` of the run a model folder belongs to: in it, its parent or grandparent
    (``RUN``, ``RUN/checkpoints``, ``RUN/checkpoints/step_N``), or None."""
    p = Path(path).resolve()
    return next((f / "config.yaml" for f in (p, p.parent, p.parent.parent) if (f / "config.yaml").is_file()), None)


def resolve_model_folder(path: str | os.PathLike) -> Path:
    """A model folder from a checkpoint folder or a run folder (its newest step checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise DlmError(f"{path}: no such model or run folder")
    if (path / CONFIG_NAME).is_file():
        return path
    steps = step_folders(path)
    if steps:
        return steps[0]
    raise DlmError(f"{path}: neither a model folder (no {CONFIG_NAME}) nor a run with checkpoints")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DlmModel, Tokenizer]:
    """Load a model and its tokenizer, in eval mode, from a dlmkit checkpoint or run folder, or:

    a released SEDD / MDLM folder (converted in memory, see :mod:`dlmkit.models.released`), a
    Hugging Face causal-LM folder, a ``.gguf`` file or a folder holding one (an ``ar`` model
    over the HF network, see :mod:`dlmkit.models.hf_causal`).
    """
    from dlmkit.models import released

    p = Path(path)
    if p.is_file() and p.suffix == ".gguf" or (p.is_dir() and not (p / CONFIG_NAME).is_file() and any(p.glob("*.gguf"))):
        from dlmkit.models.hf_causal import load_hf_causal

        return load_hf_causal(p, device)  # type: ignore[return-value]
    if p.is_dir() and (p / CONFIG_NAME).is_file():
        layout = released.detect_layout(released.read_json_config(p), str(p / CONFIG_NAME))
        if layout in ("sedd", "mdlm"):
            return released.load_released(p, device)
        if layout == "hf_causal":
            from dlmkit.models.hf_causal import load_hf_causal

            return load_hf_causal(p, device)  # type: ignore[return-value]
    folder = resolve_model_folder(path)
    config = read_config(folder)
    model = DlmModel(config)
    load_weights(model, folder / WEIGHTS_NAME)
    tokenizer = Tokenizer.load(folder)
    if tokenizer.vocab_size != model.config["backbone"]["vocab_size"]:
        raise DlmError(f"{folder}: tokenizer has {tokenizer.vocab_size} tokens but the model {model.config['backbone']['vocab_size']}")
    model.tokenizer = tokenizer  # so model.save_pretrained(folder) writes a complete folder
    return model.to(device).eval(), tokenizer
