"""DiffuSeq's network: a learnt word-embedding table and a time-conditioned transformer over embeddings.

The denoiser predicts clean embeddings ``x_0`` from ``x_t`` and the integer step ``t``; the rounding
head is tied to the table (``logits = x @ E^T``). Its parts are public for distillation (DLM-One):
``word_emb``, ``transformer``, ``x0(x_t, t)``, ``embed(ids)``, ``logits(x)``.
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from dlmkit.errors import DlmError
from dlmkit.networks.transformer import BackboneConfig, Transformer


class DiffuSeqNet(nn.Module):
    """Word embedding table + time-conditioned transformer over embeddings (x0 prediction)."""

    def __init__(self, cfg: BackboneConfig, emb_dim: int, emb_init_std: float = 1.0):
        super().__init__()
        self.emb_dim = emb_dim
        # named "*embedding*" so the training loop keeps weight decay off it (decay shrinks the
        # space the diffusion runs in); ``word_emb`` is the public name
        self.word_embedding = nn.Embedding(cfg.vocab_size, emb_dim)
        nn.init.normal_(self.word_embedding.weight, std=emb_init_std)
        self.transformer = Transformer(
            replace(cfg, in_dim=emb_dim, out_dim=emb_dim, embed_tokens=False, time_conditioned=True, causal=False, tie_weights=False)
        )

    @property
    def word_emb(self) -> nn.Embedding:
        return self.word_embedding

    def embed(self, ids: Tensor) -> Tensor:
        """Clean embeddings ``[B, L, D]`` of token ids."""
        return self.word_embedding(ids)

    def logits(self, x: Tensor) -> Tensor:
        """Rounding head tied to the embeddings: ``x @ E^T`` -> ``[B, L, V]``."""
        return x @ self.word_embedding.weight.T

    def x0(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Predicted clean embeddings from ``x_t [B, L, D]`` at integer steps ``t [B]``."""
        return self.transformer(embeds=x_t, cond=t.float())

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.x0(x_t, t)


def unwrap(net: nn.Module) -> nn.Module:
    """The DiffuSeqNet inside DDP / torch.compile wrappers."""
    while not isinstance(net, DiffuSeqNet):
        inner = getattr(net, "module", None) or getattr(net, "_orig_mod", None)
        if inner is None:
            raise DlmError(f"expected a DiffuSeq network, got {type(net).__name__}")
        net = inner
    return net
