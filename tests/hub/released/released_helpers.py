"""An independent, straightforward forward pass of the published DDiT (SEDD / MDLM), in float64.

Written from the architecture description: token embedding; sinusoidal [cos | sin] features of
sigma (256) -> Linear -> SiLU -> Linear, then SiLU; per block weight-only LayerNorm, adaLN
(shift, scale, gate) x 2, fused q/k/v without bias, half-split rotary on q and k, softmax
attention, GELU(tanh) MLP with biases, gated residuals; final LayerNorm + adaLN + linear.

Also the builders of checkpoints in the released layouts, shared by the tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

V = 50258  # GPT-2 + mask
D, H, COND, NB, LEN = 32, 2, 16, 2, 64


def ddit_state(prefix: str, seed: int) -> dict[str, torch.Tensor]:
    """DDiT weights under SEDD/MDLM names; all random (adaLN too) so every path matters."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, std=0.2):
        return torch.randn(*shape, generator=g) * std

    s = {
        "vocab_embed.embedding": r(V, D, std=1.0),
        "sigma_map.mlp.0.weight": r(COND, 256), "sigma_map.mlp.0.bias": r(COND),
        "sigma_map.mlp.2.weight": r(COND, COND), "sigma_map.mlp.2.bias": r(COND),
        "rotary_emb.inv_freq": 1.0 / (10000 ** (torch.arange(0, D // H, 2).float() / (D // H))),
        "output_layer.norm_final.weight": 1 + r(D),
        "output_layer.linear.weight": r(V, D), "output_layer.linear.bias": r(V),
        "output_layer.adaLN_modulation.weight": r(2 * D, COND), "output_layer.adaLN_modulation.bias": r(2 * D),
    }
    for i in range(NB):
        b = f"blocks.{i}."
        s.update({
            b + "norm1.weight": 1 + r(D), b + "norm2.weight": 1 + r(D),
            b + "attn_qkv.weight": r(3 * D, D), b + "attn_out.weight": r(D, D),
            b + "mlp.0.weight": r(4 * D, D), b + "mlp.0.bias": r(4 * D),
            b + "mlp.2.weight": r(D, 4 * D), b + "mlp.2.bias": r(D),
            b + "adaLN_modulation.weight": r(6 * D, COND), b + "adaLN_modulation.bias": r(6 * D),
        })
    return {prefix + k: v.contiguous() for k, v in s.items()}


def sedd_hub_config() -> dict:
    """The fields of louaaron/sedd-small's config.json (its training config), at test size."""
    return {
        "ngpus": 8, "tokens": V - 1,
        "training": {"batch_size": 512, "accum": 1, "n_iters": 1300001, "snapshot_freq": 50000, "log_freq": 50, "eval_freq": 100,
                     "snapshot_freq_for_preemption": 10000, "weight": "standard", "snapshot_sampling": True, "ema": 0.9999},
        "data": {"train": "openwebtext", "valid": "wikitext103", "cache_dir": "data"},
        "graph": {"type": "absorb", "file": "data", "report_all": False},
        "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
        "sampling": {"predictor": "euler", "steps": 128, "noise_removal": True},
        "eval": {"batch_size": 512, "perplexity": True, "perplexity_batch_size": 32},
        "optim": {"weight_decay": 0, "optimizer": "AdamW", "lr": 3e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "warmup": 2500, "grad_clip": 1.0},
        "model": {"name": "small", "type": "ddit", "hidden_size": D, "cond_dim": COND, "length": LEN, "n_blocks": NB, "n_heads": H,
                  "scale_by_sigma": True, "dropout": 0.1},
    }


def mdlm_hub_config(time_conditioning: bool = False) -> dict:
    """The fields of kuleshov-group/mdlm-owt's config.json, at test size."""
    return {
        "architectures": ["MDLM"],
        "auto_map": {"AutoConfig": "configuration_mdlm.MDLMConfig", "AutoModelForMaskedLM": "modeling_mdlm.MDLM"},
        "cond_dim": COND, "dropout": 0.1, "hidden_dim": D, "model_length": LEN, "model_type": "mdlm", "n_blocks": NB, "n_heads": H,
        "return_dict": False, "time_conditioning": time_conditioning, "torch_dtype": "float32", "transformers_version": "4.38.2",
        "vocab_size": V,
    }


def write_release(folder: Path, config: dict, state: dict[str, torch.Tensor], *, bin_file: bool = False) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if bin_file:
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file(state, str(folder / "model.safetensors"))
    return folder



def timestep_features(sigma: torch.Tensor, dim: int = 256) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    args = sigma.double()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)



def _ln(x, w):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w


def reference_ddit(state, prefix, ids, sigma, *, n_heads, scale_by_sigma, scatter=True):
    s = {k[len(prefix):]: v.double() for k, v in state.items() if k.startswith(prefix)}
    x = s["vocab_embed.embedding"][ids]
    B, L, D = x.shape
    hd = D // n_heads
    t = timestep_features(sigma)
    c = F.silu(F.silu(t @ s["sigma_map.mlp.0.weight"].T + s["sigma_map.mlp.0.bias"]) @ s["sigma_map.mlp.2.weight"].T + s["sigma_map.mlp.2.bias"])
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(L, dtype=torch.float64)[:, None] * inv[None]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]  # [L, 1, hd]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]

    def rot(u):  # u [B, L, H, hd]
        u1, u2 = u[..., : hd // 2], u[..., hd // 2 :]
        return u * cos + torch.cat([-u2, u1], -1) * sin

    n_blocks = len({k.split(".")[1] for k in s if k.startswith("blocks.")})
    for i in range(n_blocks):
        b = lambda n: s[f"blocks.{i}.{n}"]  # noqa: E731
        mod = (c @ b("adaLN_modulation.weight").T + b("adaLN_modulation.bias"))[:, None, :]
        sh1, sc1, g1, sh2, sc2, g2 = [mod[..., j * D : (j + 1) * D] for j in range(6)]
        h = _ln(x, b("norm1.weight")) * (1 + sc1) + sh1
        qkv = (h @ b("attn_qkv.weight").T).reshape(B, L, 3, n_heads, hd)
        q, k, v = rot(qkv[:, :, 0]), rot(qkv[:, :, 1]), qkv[:, :, 2]
        att = torch.softmax(torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(hd), dim=-1)
        o = torch.einsum("bhlm,bmhd->blhd", att, v).reshape(B, L, D)
        x = x + g1 * (o @ b("attn_out.weight").T)
        h = _ln(x, b("norm2.weight")) * (1 + sc2) + sh2
        m = F.gelu(h @ b("mlp.0.weight").T + b("mlp.0.bias"), approximate="tanh") @ b("mlp.2.weight").T + b("mlp.2.bias")
        x = x + g2 * m
    fmod = (c @ s["output_layer.adaLN_modulation.weight"].T + s["output_layer.adaLN_modulation.bias"])[:, None, :]
    x = _ln(x, s["output_layer.norm_final.weight"]) * (1 + fmod[..., D:]) + fmod[..., :D]
    out = x @ s["output_layer.linear.weight"].T + s["output_layer.linear.bias"]
    if scale_by_sigma:
        sg = sigma.double()
        esigm1 = torch.where(sg < 0.5, torch.expm1(sg), sg.exp() - 1)
        out = out - esigm1.log()[:, None, None] - math.log(out.shape[-1] - 1)
    if scatter:
        out = out.scatter(-1, ids[..., None], 0.0)
    return out
