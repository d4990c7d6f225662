"""The one transformer every model kind uses.

A DiT-style network in the layout of SEDD's DDiT: pre-norm blocks with fused q/k/v, rotary
positions, PyTorch SDPA attention (no flash-attn), a GELU(tanh) MLP, and, when the model is
conditioned on a noise level, adaLN modulation (shift, scale, gate) computed from a sinusoidal
embedding of that level. With ``causal=True`` and no conditioning the same module is the
autoregressive baseline, with a KV cache for generation. It takes token ids or continuous input
vectors (embedding-space diffusion feeds vectors) and returns ``out_dim`` features per position
(logits over the vocabulary by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class BackboneConfig:
    """Shape of the network; built from a run's model section by the model kind."""

    vocab_size: int
    n_layers: int = 4
    d_model: int = 256
    n_heads: int = 4
    d_cond: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.0
    seq_len: int = 128
    causal: bool = False
    time_conditioned: bool = True
    tie_weights: bool = False
    in_dim: int = 0  # >0: continuous inputs of this width are projected in
    embed_tokens: bool = True  # False: the network only takes input vectors (no id embedding)
    n_flags: int = 0  # >0: a learned embedding of a per-position flag (e.g. "held clean") is added
    out_dim: int = 0  # >0: output width instead of the vocabulary
    freq_dim: int = 256  # sinusoidal features of the noise level
    rotary_base: float = 10000.0
    # Set: the adaLN conditioning is always computed from this constant noise level, whatever
    # ``cond`` is passed (or none). MDLM's released models with time_conditioning=False feed
    # sigma = 0, so their conditioning is the constant SiLU(embed(0)), not absent.
    fixed_cond: float | None = None


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features [cos | sin] of a float level per example: [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Noise level -> conditioning vector: sinusoidal features then a two-layer SiLU MLP."""

    def __init__(self, d_cond: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, d_cond), nn.SiLU(), nn.Linear(d_cond, d_cond))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t, self.freq_dim))


class Rotary(nn.Module):
    """Rotary position embedding (half-split convention), cached up to the context length."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, x: Tensor, start: int = 0, positions: Tensor | None = None) -> Tensor:
        """Rotate ``x`` of shape [B, H, L, D] for positions start..start+L-1 (or ``positions`` [L])."""
        n = x.shape[-2]
        where = slice(start, start + n) if positions is None else positions
        cos = self.cos[where].to(x.dtype)
        sin = self.sin[where].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class KVCache:
    """Keys and values of past positions for every layer, preallocated to the context length."""

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_len: int, head_dim: int, *, dtype: torch.dtype, device: torch.device):
        shape = (n_layers, batch, n_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0
        self.max_len = max_len


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x * (1 + scale) + shift, with per-example shift/scale broadcast over positions."""
    return x * (1 + scale) + shift


class Attention(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.causal = cfg.causal
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: Tensor, rotary: Rotary, cache: KVCache | None, layer: int, attn_mask: Tensor | None,
                positions: Tensor | None = None) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        start = cache.length if cache is not None else 0
        q, k = rotary(q, start, positions), rotary(k, start, positions)
        is_causal = self.causal and start == 0 and attn_mask is None
        mask = attn_mask
        if cache is not None:
            cache.k[layer, :, :, start : start + n] = k
            cache.v[layer, :, :, start : start + n] = v
            k = cache.k[layer, :, :, : start + n]
            v = cache.v[layer, :, :, : start + n]
            if self.causal and start > 0 and n > 1:
                # queries at start+i see keys up to start+i (a bidirectional model's see them all)
                mask = torch.ones(n, start + n, dtype=torch.bool, device=x.device).tril(diagonal=start)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    """Pre-norm transformer block; adaLN shift/scale/gate when conditioned on a noise level."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        d = cfg.d_model
        self.norm1 = nn.LayerNorm(d, bias=False)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(d, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(approximate="tanh"), nn.Linear(cfg.mlp_ratio * d, d)
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.adaLN = nn.Linear(cfg.d_cond, 6 * d) if cfg.time_conditioned else None

    def forward(self, x: Tensor, c: Tensor | None, rotary: Rotary, cache: KVCache | None, layer: int, attn_mask: Tensor | None,
                positions: Tensor | None = None) -> Tensor:
        if self.adaLN is None:
            x = x + self.drop(self.attn(self.norm1(x), rotary, cache, layer, attn_mask, positions))
            return x + self.drop(self.mlp(self.norm2(x)))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c)[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.drop(self.attn(modulate(self.norm1(x), shift1, scale1), rotary, cache, layer, attn_mask, positions))
        return x + gate2 * self.drop(self.mlp(modulate(self.norm2(x), shift2, scale2)))


class Transformer(nn.Module):
    """Bidirectional (time-conditioned) or causal transformer over ids or input vectors."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
            raise ValueError("d_model must split into an even head width per head")
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d) if cfg.embed_tokens else None
        self.in_proj = nn.Linear(cfg.in_dim, d) if cfg.in_dim else None
        self.flag_embed = nn.Embedding(cfg.n_flags, d) if cfg.n_flags else None
        self.time = TimestepEmbedder(cfg.d_cond, cfg.freq_dim) if cfg.time_conditioned else None
        self.rotary = Rotary(d // cfg.n_heads, cfg.seq_len, cfg.rotary_base)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d, bias=False)
        self.final_adaLN = nn.Linear(cfg.d_cond, 2 * d) if cfg.time_conditioned else None
        out_dim = cfg.out_dim or cfg.vocab_size
        self.head = nn.Linear(d, out_dim, bias=not cfg.tie_weights)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-style N(0, 0.02) weights; adaLN layers start at zero so each block starts as identity."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for m in [*(b.adaLN for b in self.blocks), self.final_adaLN]:
            if m is not None:
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cfg.tie_weights and not self.cfg.out_dim and self.embed is not None:
            self.head.weight = self.embed.weight

    def new_cache(self, batch: int, *, dtype: torch.dtype | None = None) -> KVCache:
        """An empty KV cache for ``batch`` sequences up to the context length."""
        p = next(self.parameters())
        cfg = self.cfg
        return KVCache(cfg.n_layers, batch, cfg.n_heads, cfg.seq_len, cfg.d_model // cfg.n_heads, dtype=dtype or p.dtype, device=p.device)

    def forward(
        self,
        ids: Tensor | None = None,
        *,
        embeds: Tensor | None = None,
        cond: Tensor | None = None,
        cache: KVCache | None = None,
        attn_mask: Tensor | None = None,
        flags: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """Run the network.

        ids [B, L] or embeds [B, L, in_dim or d_model]; cond [B] the noise level (required when
        time-conditioned); cache: a :class:`KVCache` (causal models) that is read and extended;
        attn_mask: optional boolean [L, L] or [B, 1, L, L] mask (True = may attend); flags: int
        [B, L] per-position flags when the network has ``n_flags`` (default all 0); positions: int [L]
        rotary positions of the inputs (default consecutive after the cache; two copies of a
        sequence side by side repeat them, as block diffusion's training input does).
        Returns [B, L, out_dim] features (vocabulary logits by default), in float32.
        """
        x = self.embed(ids) if embeds is None else (self.in_proj(embeds) if self.in_proj is not None else embeds)
        if self.flag_embed is not None:
            x = x + self.flag_embed(flags if flags is not None else torch.zeros(x.shape[:2], dtype=torch.long, device=x.device))
        n = x.shape[1]
        start = cache.length if cache is not None else 0
        end = start + n if positions is None else int(positions.max()) + 1
        if end > self.cfg.seq_len:
            raise ValueError(f"sequence of {end} tokens is longer than the model's context ({self.cfg.seq_len})")
        c = None
        if self.time is not None:
            if self.cfg.fixed_cond is not None:
                cond = torch.full((x.shape[0],), float(self.cfg.fixed_cond), device=x.device)
            if cond is None:
                raise ValueError("this model is conditioned on a noise level: pass cond")
            c = F.silu(self.time(cond.to(x.device).reshape(-1).expand(x.shape[0])))
        for i, block in enumerate(self.blocks):
            x = block(x, c, self.rotary, cache, i, attn_mask, positions)
        if cache is not None:
            cache.length += n
        x = self.norm(x)
        if self.final_adaLN is not None:
            shift, scale = self.final_adaLN(c)[:, None].chunk(2, dim=-1)
            x = modulate(x, shift, scale)
        return self.head(x).float()

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count, by default without the input embedding (as in scaling-law FLOP counts)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.embed is not None and not (self.cfg.tie_weights and not self.cfg.out_dim):
            n -= self.embed.weight.numel()
        return n
