"""Minimum Bayes risk selection over k sampled candidates, as DiffuSeq's ``selectBest``.

Candidate i is scored by the sum of its sentence BLEU as the output against every other
candidate as the reference, ``sum_{j != i} sentence_bleu(c_i, c_j)`` (see
``dlmkit.eval.metrics.seq2seq.sentence_bleu``); the highest sum wins, ties going to the lowest
index. The sums are taken with numpy over the rows of the k x k matrix with a zero diagonal,
exactly as DiffuSeq's ``np.argmax(np.sum(m, -1))``, so even near-ties resolve the same way.
The winner is the consensus candidate: the one the other samples agree with most.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dlmkit.eval.metrics.seq2seq import progress_bar, sentence_bleu


def mbr_select(candidates: Sequence[str]) -> tuple[int, str]:
    """Index and text of the MBR choice among the candidates for one source."""
    if not candidates:
        raise ValueError("MBR needs at least one candidate")
    k = len(candidates)
    scores = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if i != j:
                scores[i, j] = sentence_bleu(candidates[i], candidates[j])
    best = int(np.argmax(np.sum(scores, -1)))  # first maximum
    return best, candidates[best]


def mbr_decode(candidate_sets: Sequence[Sequence[str]], *, progress: bool = False) -> list[str]:
    """The MBR choice for every source; ``candidate_sets[i]``: the candidates of source i."""
    return [mbr_select(c)[1] for c in progress_bar(candidate_sets, "MBR", progress)]
