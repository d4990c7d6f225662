"""Checkpoint folders: the model (loadable on its own) plus the state that resumes training exactly.

Layout of one checkpoint folder::

    config.json  model.safetensors  tokenizer.json  dlm_tokenizer.json   # the model, for from_pretrained
    train_state.safetensors  train_state.json                            # optimiser, EMA, RNGs, data position

``model.safetensors`` holds the inference weights (the EMA when enabled); the raw weights then
live in the training state. A folder is written under a temporary name (``.NAME.tmp-*``), its
files and itself are fsynced, and it is renamed when complete (then the parent is fsynced), so a
kill or a power loss leaves either the old set of checkpoints or the new one, never half a
folder; what a kill leaves behind is cleared by :func:`clear_partial`. Both safetensors files
record the checkpoint's identity in their header (kind, architecture, tokenizer fingerprint):
resume, ``--init-from``, sampling and evaluation refuse a checkpoint that is not what they expect.
Nothing here unpickles: tensors are safetensors, the rest is JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file, save_model

from dlmkit.data.tokenizer import Tokenizer
from dlmkit.errors import DlmError
from dlmkit.io import fsync_path, respect_umask
from dlmkit.hub.model import CONFIG_NAME, WEIGHTS_NAME, DlmModel, load_weights, read_config
from dlmkit.networks.transformer import BackboneConfig

STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"
STEP_DIR = re.compile(r"^step_(\d+)$")
# what a kill can leave beside checkpoint folders: a folder being written, or one being replaced
# (``.NAME.old``); ``.step_N.XXXXXXXX`` / ``.best.XXXXXXXX`` are the temporary names of older dlmkit
PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?:tmp-[A-Za-z0-9_]+|old)$|^\.(?:step_\d+|best)\.[a-z0-9_]{8}$")
ATOMIC_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # a file of dlmkit.io.atomic_path, never renamed
IDENTITY = ("dlmkit_kind", "dlmkit_arch", "dlmkit_tokenizer")
HEADER_KEY = "dlmkit_identity"  # one key: safetensors writes its metadata map in no fixed order


class CheckpointMismatch(DlmError):
    """A readable checkpoint that is not the model the caller expects (never skipped silently)."""


def architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The shape part of a model config: the backbone with defaults filled in, dropout left out
    (a training setting a resumed run may change)."""
    known = {f.name for f in fields(BackboneConfig)}
    try:
        arch = asdict(BackboneConfig(**{k: v for k, v in config["backbone"].items() if k in known}))
    except (KeyError, TypeError, AttributeError) as e:
        raise DlmError(f"model config: incomplete backbone ({e})") from None
    arch.pop("dropout")
    return arch


def identity(config: dict[str, Any], tokenizer: Tokenizer) -> dict[str, str]:
    """What a checkpoint is: its kind, its architecture and its tokenizer's fingerprint (as
    safetensors header metadata: strings)."""
    return {"dlmkit_kind": config["kind"], "dlmkit_arch": json.dumps(architecture(config), sort_keys=True),
            "dlmkit_tokenizer": tokenizer.fingerprint}


def describe_mismatch(want: dict[str, str], got: dict[str, str]) -> str | None:
    """None when the identities agree, else what differs, in words."""
    if got["dlmkit_kind"] != want["dlmkit_kind"]:
        return f"a {got['dlmkit_kind']} model, not {want['dlmkit_kind']}"
    if got["dlmkit_arch"] != want["dlmkit_arch"]:
        a, b = json.loads(got["dlmkit_arch"]), json.loads(want["dlmkit_arch"])
        diff = ", ".join(f"{k} {a.get(k)} instead of {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        return f"another architecture ({diff})"
    if got["dlmkit_tokenizer"] != want["dlmkit_tokenizer"]:
        return f"another tokenizer (fingerprint {got['dlmkit_tokenizer']}, not {want['dlmkit_tokenizer']})"
    return None


def header(identity: dict[str, str]) -> dict[str, str]:
    """The safetensors metadata recording ``identity``: one sorted JSON string, so the same
    checkpoint is the same bytes whatever process wrote it."""
    return {HEADER_KEY: json.dumps(identity, sort_keys=True)}


def recorded_identity(path: Path) -> dict[str, str] | None:
    """The identity a safetensors file records in its header (None: written before dlmkit recorded it)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise DlmError(f"{path}: unreadable or truncated ({e})") from None
    try:
        recorded = json.loads(meta[HEADER_KEY]) if HEADER_KEY in meta else meta
    except json.JSONDecodeError:
        raise DlmError(f"{path}: damaged identity in its header") from None
    return {k: recorded[k] for k in IDENTITY} if all(k in recorded for k in IDENTITY) else None


def folder_identity(folder: Path, config: dict[str, Any] | None = None, tokenizer: Tokenizer | None = None) -> dict[str, str]:
    """A checkpoint folder's identity from its config and tokenizer (read when not given), checked
    against what its safetensors files record (a :class:`CheckpointMismatch` when mixed up)."""
    own = identity(config if config is not None else read_config(folder), tokenizer or Tokenizer.load(folder))
    for name in (WEIGHTS_NAME, STATE_TENSORS):
        if (folder / name).is_file() and (rec := recorded_identity(folder / name)) is not None:
            if (why := describe_mismatch(own, rec)) is not None:
                raise CheckpointMismatch(f"{folder / name}: belongs to another model than the folder's config and tokenizer ({why})")
    return own


def run_identity(folder: Path) -> tuple[Path, str, str] | None:
    """(run folder, kind, tokenizer fingerprint) of the run a ``RUN/checkpoints/NAME`` folder belongs to."""
    run = folder.resolve().parent.parent
    if folder.resolve().parent.name != "checkpoints" or not (run / "config.yaml").is_file() or not (run / "tokenizer").is_dir():
        return None
    import yaml

    try:
        kind = (yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}).get("model", {}).get("kind")
        fingerprint = Tokenizer.load(run / "tokenizer").fingerprint
    except (OSError, yaml.YAMLError, AttributeError, DlmError):
        return None  # a damaged run folder: the checkpoint still stands on its own
    return run, str(kind), fingerprint


def write_model_folder(folder: Path, model: DlmModel, tokenizer: Tokenizer, weights: dict[str, torch.Tensor] | None = None) -> None:
    """Write config, weights (``model``'s own, or ``weights``) and tokenizer into an existing folder;
    the weights' header records the identity."""
    (folder / CONFIG_NAME).write_text(json.dumps(model.config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    meta = header(identity(model.config, tokenizer))
    if weights is None:
        save_model(model, str(folder / WEIGHTS_NAME), metadata=meta)
    else:
        save_file(_drop_aliases(weights), str(folder / WEIGHTS_NAME), metadata=meta)
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
    """Move a completed temporary folder onto ``final``, replacing an older one, durably: the files
    and the folder reach the disk before the rename, and the rename before this returns. The files
    get the umask's permissions (safetensors writes 0600)."""
    for f in tmp.iterdir():
        respect_umask(f, folder=f.is_dir())
        fsync_path(f)
    fsync_path(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_path(final.parent)


def clear_partial(folder: Path) -> list[str]:
    """Remove what a killed writer left in ``folder``: temporary checkpoint folders and files, and
    put back a ``.NAME.old`` whose replacement never arrived. Returns the names removed or restored.

    Only the process that owns the folder (it holds the run lock) may call this.
    """
    done: list[str] = []
    if not folder.is_dir():
        return done
    for p in sorted(folder.iterdir()):
        if ATOMIC_TMP.match(p.name) and p.is_file():
            p.unlink()
            done.append(p.name)
            continue
        m = PARTIAL.match(p.name)
        if not m or not p.is_dir():
            continue
        name = m.group("name")
        if p.name.endswith(".old") and name and not (folder / name).exists():
            os.replace(p, folder / name)  # killed between the two renames: the old folder is complete
        else:
            shutil.rmtree(p, ignore_errors=True)
        done.append(p.name)
    if done:
        fsync_path(folder)
    return done


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
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        respect_umask(tmp, folder=True)
        write_model_folder(tmp, model, tokenizer, weights)
        if state_tensors is not None:
            save_file({k: v.detach().contiguous().cpu() for k, v in state_tensors.items()}, str(tmp / STATE_TENSORS),
                      metadata=header(identity(model.config, tokenizer)))
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


def load_dlmkit(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DlmModel, Tokenizer]:
    """A dlmkit checkpoint folder, or a run folder's newest readable step checkpoint (as ``--resume``),
    in eval mode; every other format is :func:`dlmkit.hub.load.load`'s."""
    p = Path(path)
    if not p.exists():
        raise DlmError(f"{p}: no such model or run folder")
    candidates = [p] if (p / CONFIG_NAME).is_file() else step_folders(p)
    if not candidates:
        raise DlmError(f"{p}: neither a model folder (no {CONFIG_NAME}) nor a run with checkpoints")
    for i, folder in enumerate(candidates):  # a run folder: its newest readable step checkpoint, as --resume
        try:
            model, tokenizer = _load_checkpoint(folder)
        except CheckpointMismatch:
            raise
        except DlmError as e:
            if len(candidates) == 1:
                raise
            if i == len(candidates) - 1:
                raise DlmError(f"{p}: no readable checkpoint (the oldest, {e})") from None
            print(f"warning: {e}; falling back to an earlier checkpoint", file=sys.stderr)
            continue
        if i:
            print(f"using {folder}: the newest readable checkpoint of {p}", file=sys.stderr)
        return model.to(device).eval(), tokenizer
    raise AssertionError("unreachable")


def _load_checkpoint(folder: Path) -> tuple[DlmModel, Tokenizer]:
    """One dlmkit checkpoint folder, its identity checked: the weights' recorded identity against
    its config and tokenizer, and, inside a run folder, its kind and tokenizer against the run's."""
    config = read_config(folder)
    tokenizer = Tokenizer.load(folder)
    own = folder_identity(folder, config, tokenizer)
    run = run_identity(folder)
    if run is not None:
        run_dir, kind, fingerprint = run
        if kind != own["dlmkit_kind"]:
            raise CheckpointMismatch(f"{folder}: a {own['dlmkit_kind']} checkpoint inside the {kind} run {run_dir}: it belongs to another model")
        if fingerprint != own["dlmkit_tokenizer"]:
            raise CheckpointMismatch(f"{folder}: its tokenizer is not the one of the run {run_dir}: it belongs to another model")
    model = DlmModel(config)
    load_weights(model, folder / WEIGHTS_NAME)
    if tokenizer.vocab_size != model.config["backbone"]["vocab_size"]:
        raise DlmError(f"{folder}: tokenizer has {tokenizer.vocab_size} tokens but the model {model.config['backbone']['vocab_size']}")
    model.tokenizer = tokenizer  # so model.save_pretrained(folder) writes a complete folder
    return model, tokenizer
