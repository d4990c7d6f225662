"""The target concrete score (TCS) of an autoregressive teacher: the distillation target of :mod:`dlmkit.recipes.tcs`.

The target concrete score lives in clean data space: for a clean sequence x and its neighbour
x^{i<-y} (position i set to y), c(x)[i, y] = p(x^{i<-y}) / p(x) = p(y | x_-i) / p(x_i | x_-i).
Normalising it over y gives the single-site conditional p(y | x_-i), which a teacher estimates:

* ``exact``: every vocabulary substitution at every target position, scored by the teacher's
  full-sequence likelihood (V - 1 extra sequences per target position; small vocabularies).
* ``topk``: candidates = the top-K tokens of the teacher's left-context distribution
  p(y | x_<i) plus the true token, rescored by full-sequence likelihood and renormalised over
  the candidates (at most K extra sequences per target position).
* ``left``: the one-pass proxy p(y | x_<i) (it ignores the right context).

Only the suffix from i onwards differs between x and x^{i<-y}, so a candidate's score is
log p(y | x_<i) + sum_{j > i} log p(x_j | x_<j with x_i = y); the true token's score comes from
the pass over x itself and costs nothing extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from dlmkit.errors import DlmError

ESTIMATORS = ("exact", "topk", "left")
MAX_EXACT_VOCAB = 4096


class Scorer(Protocol):
    """An autoregressive teacher: log-probabilities of a batch of rows ``x`` [B, L]."""

    device: torch.device

    def next_logprobs(self, x: Tensor) -> Tensor:
        """log p(y | x_<i) for every position and token: [B, L, V]."""
        ...

    def token_logprobs(self, x: Tensor) -> Tensor:
        """log p(x_i | x_<i): [B, L]."""
        ...


@dataclass
class Target:
    """Estimated p(y | x_-i) at N target positions (``b``, ``i``).

    ``ids`` [N, C] are the candidate tokens (None: every token of the vocabulary, C = V) and
    ``logq`` [N, C] their normalised log-probabilities (-inf: not a candidate).
    """

    b: Tensor
    i: Tensor
    ids: Tensor | None
    logq: Tensor

    def dense(self, vocab_size: int) -> Tensor:
        """log q over the whole vocabulary [N, V] (-inf outside the candidates)."""
        if self.ids is None:
            return self.logq
        out = self.logq.new_full((self.logq.shape[0], vocab_size), -torch.inf)
        return out.scatter_reduce(-1, self.ids, self.logq, reduce="amax")  # a repeated id is -inf in all but one place


def _suffix_scores(teacher: Scorer, x: Tensor, b: Tensor, i: Tensor, y: Tensor, batch: int) -> Tensor:
    """sum_{j > i} log p(x_j | x_<j) of x[b] with position i set to y, one row per (b, i, y): [R]."""
    L = x.shape[1]
    out = torch.empty(len(b), dtype=torch.float32, device=teacher.device)
    pos = torch.arange(L, device=x.device)
    for s in range(0, len(b), batch):
        bb, ii, yy = b[s : s + batch], i[s : s + batch], y[s : s + batch]
        rows = x[bb].clone()
        rows[torch.arange(len(bb), device=x.device), ii] = yy
        lp = teacher.token_logprobs(rows)
        after = (pos[None] > ii[:, None]).to(lp.device)
        out[s : s + batch] = torch.where(after, lp, torch.zeros_like(lp)).sum(-1)
    return out


@torch.no_grad()
def estimate_target(
    teacher: Scorer, x: Tensor, positions: Tensor, estimator: str = "topk", *, k: int = 16, batch: int = 64,
) -> Target:
    """The teacher's p(y | x_-i) at the positions where ``positions`` (bool [B, L]) is True."""
    if estimator not in ESTIMATORS:
        raise DlmError(f"unknown TCS estimator '{estimator}' (choose: {', '.join(ESTIMATORS)})")
    x = x.to(teacher.device)
    b, i = positions.to(teacher.device).nonzero(as_tuple=True)
    left = teacher.next_logprobs(x)  # [B, L, V]
    V = left.shape[-1]
    left_rows = left[b, i]  # [N, V]
    if estimator == "left":
        return Target(b, i, None, left_rows)
    true = x[b, i]
    own = left.gather(-1, x.unsqueeze(-1)).squeeze(-1)  # [B, L]
    pos = torch.arange(x.shape[1], device=x.device)
    true_suffix = torch.where(pos[None] > i[:, None], own[b], torch.zeros_like(own[b])).sum(-1)  # [N]
    allowed = torch.isfinite(left_rows)  # excluded tokens are -inf
    if estimator == "exact":
        if V > MAX_EXACT_VOCAB:
            raise DlmError(f"the exact TCS estimator rescores every token ({V} per position): use topk for vocabularies over {MAX_EXACT_VOCAB}")
        ids = torch.arange(V, device=x.device).expand(len(b), V)
        valid = torch.ones_like(ids, dtype=torch.bool)
    else:
        if k < 1:
            raise DlmError(f"top_k must be at least 1, got {k}")
        kk = min(k, V)
        top = left_rows.topk(kk, dim=-1).indices
        ids = torch.cat([top, true[:, None]], dim=1)  # the true token is always a candidate
        valid = torch.ones_like(ids, dtype=torch.bool)
        valid[:, -1] = ~(top == true[:, None]).any(-1)  # unless it is already in the top-K
    valid &= allowed.gather(-1, ids) | (ids == true[:, None])
    scores = left_rows.gather(-1, ids)  # log p(y | x_<i)
    scores = torch.where(valid, scores, torch.full_like(scores, -torch.inf))
    rescore = valid & (ids != true[:, None])
    n_idx, c_idx = rescore.nonzero(as_tuple=True)
    suffix = torch.zeros_like(scores)
    if len(n_idx):
        suffix[n_idx, c_idx] = _suffix_scores(teacher, x, b[n_idx], i[n_idx], ids[n_idx, c_idx], batch)
    is_true = valid & (ids == true[:, None])
    suffix = torch.where(is_true, true_suffix[:, None].expand_as(suffix), suffix)
    logq = torch.log_softmax(scores + suffix, dim=-1)
    return Target(b, i, None if estimator == "exact" else ids, logq)
