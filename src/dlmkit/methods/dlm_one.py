"""DLM-One students (Chen, Zhang, Zhou 2025): one-step generators distilled from a DiffuSeq teacher.

The student has the teacher's network shape (a ``DiffuSeqNet``) and is saved as its own kind,
``dlm_one``, so ``dlm sample STUDENT --src-file FILE`` and the seq2seq API treat it as any seq2seq
model. Generation is ``e = G_theta(c, z)``: the network applied once, at ``t_init``, to
``N(0, I)`` noise at target positions with the clean condition embeddings at source positions;
the condition positions of the output are then replaced by the true condition embeddings
("condition injection"). Optionally ``k`` re-noise/denoise rounds refine the output (DLM-One's
Table 4): forward-diffuse the output to ``refine_t`` and apply the generator again.

Options (the checkpoint's ``options["dlm_one"]``): ``t_init`` (default 1490 of 2000, scaled for
other T), ``refine`` (k, default 0), ``refine_t`` (default ``t_init``). At sampling time
``sampler="one_step"`` or ``sampler="renoise-K"`` (k rounds), or ``refine=K``; ``steps`` is ignored.
Training is ``dlm distill dlm-one`` (``dlmkit.recipes.dlm_one``), not ``dlm train``.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from dlmkit.diffusion.gaussian import GaussianDiffusion, X0Fn, impose_source
from dlmkit.errors import DlmError
from dlmkit.methods.base import register
from dlmkit.methods.diffuseq import DiffuSeq, unwrap
from dlmkit.sampling.continuous import SampleOutput, Seq2SeqSampler, nearest_embedding


def paper_step(step: int, T: int) -> int:
    """A step given on the paper's 2000-step scale, at the same fraction of ``T`` (at most T - 1)."""
    return min(T - 1, round(step * T / 2000))


def default_t_init(T: int) -> int:
    """DLM-One's ``t_init = 1490`` at ``T = 2000``, at the same fraction for other ``T``."""
    return paper_step(1490, T)


def one_step(x0_fn: X0Fn, x_cond: Tensor, target_mask: Tensor, z: Tensor, t_init: int) -> Tensor:
    """``G_theta(c, z)``: one network call at ``t_init`` on noise ``z`` (target positions) next to the
    clean condition, then condition injection. Differentiable (used in training)."""
    x_in = impose_source(z, x_cond, target_mask)
    t = torch.full((x_in.shape[0],), int(t_init), dtype=torch.long, device=x_in.device)
    return impose_source(x0_fn(x_in, t), x_cond, target_mask)


class OneStepSampler:
    """A ``Seq2SeqSampler`` for a one-step generator: ``nfe = 1 + refine``."""

    def __init__(self, diffusion: GaussianDiffusion, x0_fn: X0Fn, t_init: int, *, logits_fn=None, embedding: Tensor | None = None,
                 decode: str = "logits", refine: int = 0, refine_t: int | None = None):
        if decode not in ("logits", "nearest"):
            raise DlmError(f"decode must be 'logits' or 'nearest', got {decode!r}")
        if refine < 0:
            raise DlmError(f"refine must be >= 0, got {refine}")
        T = diffusion.num_timesteps
        if not 0 <= t_init < T:
            raise DlmError(f"t_init must be in [0, {T - 1}], got {t_init}")
        self.diffusion, self.x0_fn, self.t_init = diffusion, x0_fn, int(t_init)
        self.logits_fn, self.embedding, self.decode = logits_fn, embedding, decode
        self.refine = int(refine)
        self.refine_t = int(t_init if refine_t is None else refine_t)

    def generate(self, x_cond: Tensor, target_mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Output embeddings ``[B, L, D]`` (condition positions bit-identical to ``x_cond``)."""

        def randn() -> Tensor:
            return torch.randn(x_cond.shape, generator=generator, dtype=x_cond.dtype, device=x_cond.device)

        e = one_step(self.x0_fn, x_cond, target_mask, randn(), self.t_init)
        for _ in range(self.refine):
            t = torch.full((e.shape[0],), self.refine_t, dtype=torch.long, device=e.device)
            x = self.diffusion.q_sample(e, t, target_mask, noise=randn())
            e = one_step(self.x0_fn, x_cond, target_mask, x, self.refine_t)
        return e

    @torch.no_grad()
    def sample(self, x_cond: Tensor, target_mask: Tensor, generator: torch.Generator | None = None) -> SampleOutput:
        e = self.generate(x_cond, target_mask, generator)
        if self.decode == "logits":
            ids = self.logits_fn(e).argmax(-1)
        else:
            ids = nearest_embedding(e, self.embedding)[0]
        return SampleOutput(tokens=ids, nfe=1 + self.refine, embeddings=e)



def parse_sampler(name: str | None) -> int | None:
    """``"one_step"`` -> 0 refinements, ``"renoise-K"`` -> K; None -> None (use the default)."""
    if name is None:
        return None
    if name in ("one_step", "one-step"):
        return 0
    m = re.fullmatch(r"renoise-(\d+)", name)
    if not m:
        raise DlmError(f"dlm_one sampler must be 'one_step' or 'renoise-K' (K re-noise/denoise rounds), got {name!r}")
    return int(m.group(1))


@register
class DLMOne(DiffuSeq):
    """The one-step student of a DiffuSeq teacher (same network; sampling replaced)."""

    kind = "dlm_one"
    extra_options = ("sampler", "refine", "refine_t", "decode")
    trainable = False
    instead = {**DiffuSeq.instead, "training": "a dlm_one student is trained by distillation: dlm distill dlm-one TEACHER_RUN"}

    def __init__(self, vocab_size: int, specials: Any, options: dict[str, Any] | None = None):
        super().__init__(vocab_size, specials, options)
        own = dict(self.options.get("dlm_one") or {})
        self.t_init = int(own.get("t_init", default_t_init(self.T)))
        self.refine = int(own.get("refine", 0))
        self.refine_t = own.get("refine_t")
        if not 0 <= self.t_init < self.T:
            raise DlmError(f"dlm_one t_init must be in [0, {self.T - 1}], got {self.t_init}")

    def make_sampler(self, net, steps: int, **options: Any) -> Seq2SeqSampler:
        """The one-step generator (``steps`` is ignored; ``refine``/``sampler="renoise-K"`` add rounds)."""
        unknown = set(options) - set(self.extra_options)
        if unknown:
            raise DlmError(f"dlm_one takes no sampling option {', '.join(sorted(unknown))} (it takes: {', '.join(self.extra_options)})")
        refine = self.refine
        from_name = parse_sampler(options.get("sampler"))
        if from_name is not None:
            refine = from_name
        if options.get("refine") is not None:
            refine = int(options["refine"])
        refine_t = options.get("refine_t", self.refine_t)
        inner = unwrap(net)
        return OneStepSampler(self.diffusion, inner.x0, self.t_init, logits_fn=inner.logits, embedding=inner.word_emb.weight,
                              decode=options.get("decode", self.opts["decode"]), refine=refine,
                              refine_t=None if refine_t is None else int(refine_t))
