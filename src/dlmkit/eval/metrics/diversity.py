"""Lexical diversity statistics over token sequences (word lists or token id lists).

Two families live here, shared by the seq2seq metrics so each count is implemented once:

* Dist-n / Div-n as DiffuSeq's evaluation script defines them (``dist_n``: distinct n-grams
  over all n-grams of *one* sequence; ``div_n``: the same ratio over the n-grams pooled from a
  *set* of sequences, e.g. the candidates decoded for one source with different seeds).
* The sample statistics of Deschenaux & Gulcehre, "Promises, Outlooks and Challenges of
  Diffusion Language Modeling" (2024), used to spot degenerate (low-entropy, repetitive)
  unconditional samples: fraction of unique unigrams, unigram entropy and repetition rate.

Sequences are any sequences of hashable tokens; tensors and arrays are converted with
``tolist()``. Strip padding before calling: pad tokens count like any other token.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from statistics import fmean
from typing import Any

REPETITION_WINDOW = 100


def _tokens(seq: Any) -> list[Hashable]:
    return list(seq.tolist()) if hasattr(seq, "tolist") else list(seq)


def ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple[Hashable, ...]]:
    """All contiguous n-grams of ``tokens`` in order (none when it is shorter than n)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tokens = _tokens(tokens)
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _distinct_ratio(grams: list[tuple[Hashable, ...]]) -> float:
    # DiffuSeq returns 0 when there is no n-gram at all; so do we.
    return len(set(grams)) / len(grams) if grams else 0.0


def dist_n(tokens: Sequence[Hashable], n: int) -> float:
    """Distinct n-grams / total n-grams within one sequence (0.0 if it has no n-gram)."""
    return _distinct_ratio(ngrams(tokens, n))


def div_n(sequences: Iterable[Sequence[Hashable]], n: int) -> float:
    """Distinct n-grams / total n-grams pooled over a set of sequences (0.0 if none).

    DiffuSeq's Div-4 is ``div_n(candidates_for_one_source, 4)``, averaged over sources.
    """
    return _distinct_ratio([g for seq in sequences for g in ngrams(seq, n)])


def unique_unigram_fraction(tokens: Sequence[Hashable]) -> float:
    """Distinct tokens / tokens of one sequence (0.0 if empty); equals ``dist_n(tokens, 1)``."""
    return dist_n(tokens, 1)


def unigram_entropy(tokens: Sequence[Hashable]) -> float:
    """Shannon entropy, in nats, of the sequence's own unigram frequency distribution.

    ``-sum_t p(t) ln p(t)`` with ``p(t) = count(t) / len(tokens)``; 0.0 for an empty or
    constant sequence, ``ln(len)`` when every token is distinct.
    """
    tokens = _tokens(tokens)
    total = len(tokens)
    return -sum(c / total * math.log(c / total) for c in Counter(tokens).values()) if total else 0.0


def repetition_rate(tokens: Sequence[Hashable], window: int = REPETITION_WINDOW) -> float:
    """Fraction of positions whose token already occurs among the ``window`` tokens before it.

    Position ``i`` counts as a repetition when ``tokens[i]`` is in
    ``tokens[max(0, i - window) : i]``; the denominator is every position, the first one
    included (it can never repeat). 0.0 for an empty sequence.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    tokens = _tokens(tokens)
    if not tokens:
        return 0.0
    recent: Counter[Hashable] = Counter()
    repeats = 0
    for i, tok in enumerate(tokens):
        repeats += recent[tok] > 0
        recent[tok] += 1
        if i >= window:
            recent[tokens[i - window]] -= 1
    return repeats / len(tokens)


def diversity_stats(
    sequences: Iterable[Sequence[Hashable]], window: int = REPETITION_WINDOW
) -> dict[str, Any]:
    """The three sample statistics per sequence and aggregated over the set.

    Aggregation is the unweighted mean of the per-sequence values (every sample counts the
    same whatever its length), which is how per-sample statistics of fixed-length
    unconditional samples are usually reported. Returns ``{"unique_unigram_fraction",
    "unigram_entropy", "repetition_rate"}`` (means) and ``"per_sample"``: the same keys
    mapped to lists.
    """
    seqs = [_tokens(s) for s in sequences]
    if not seqs:
        raise ValueError("diversity_stats needs at least one sequence")
    per_sample = {
        "unique_unigram_fraction": [unique_unigram_fraction(s) for s in seqs],
        "unigram_entropy": [unigram_entropy(s) for s in seqs],
        "repetition_rate": [repetition_rate(s, window) for s in seqs],
    }
    return {**{k: fmean(v) for k, v in per_sample.items()}, "per_sample": per_sample}
