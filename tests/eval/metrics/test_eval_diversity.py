import math

import pytest
import torch

from dlmkit.eval.metrics.diversity import (
    dist_n,
    div_n,
    diversity_stats,
    ngrams,
    repetition_rate,
    unigram_entropy,
    unique_unigram_fraction,
)


def test_ngrams():
    assert ngrams([1, 2, 3], 2) == [(1, 2), (2, 3)]
    assert ngrams([1, 2], 3) == []
    with pytest.raises(ValueError):
        ngrams([1], 0)


def test_dist_n_by_hand():
    assert dist_n("a b a c".split(), 1) == 3 / 4
    assert dist_n("a b a c".split(), 2) == 1.0  # ab, ba, ac
    assert dist_n("a a a a".split(), 2) == 1 / 3  # aa x3
    assert dist_n([], 1) == 0.0  # DiffuSeq: 0 when there is no n-gram


def test_div_n_pools_across_sequences():
    # 4-grams: abcd, bcde | abcd, bcdf -> 3 distinct of 4
    assert div_n(["a b c d e".split(), "a b c d f".split()], 4) == 3 / 4
    assert div_n([["a", "b"]], 4) == 0.0


def test_unique_unigram_fraction_and_entropy_by_hand():
    seq = [1, 1, 2, 3]
    assert unique_unigram_fraction(seq) == 3 / 4
    # p = 1/2, 1/4, 1/4: H = 1/2 ln 2 + 2 * 1/4 ln 4 = 1.5 ln 2 nats
    assert unigram_entropy(seq) == pytest.approx(1.5 * math.log(2))
    assert unigram_entropy([7, 7, 7]) == 0.0
    assert unigram_entropy(list(range(8))) == pytest.approx(math.log(8))
    assert unigram_entropy([]) == 0.0


def test_repetition_rate_by_hand():
    seq = [1, 2, 1, 3, 2, 2]
    # repeats at positions 2 (1), 4 (2), 5 (2): 3 of 6 positions, first position counted
    assert repetition_rate(seq) == 3 / 6
    # window 2: pos 2 sees [1, 2] -> yes; pos 4 sees [1, 3] -> no; pos 5 sees [3, 2] -> yes
    assert repetition_rate(seq, window=2) == 2 / 6
    assert repetition_rate([]) == 0.0


def test_repetition_rate_window_is_previous_100_tokens():
    assert repetition_rate(list(range(100)) + [0]) == 1 / 101  # token 0 is 100 back: inside
    assert repetition_rate(list(range(101)) + [0]) == 0.0  # 101 back: outside


def test_diversity_stats_per_sample_and_mean():
    out = diversity_stats([torch.tensor([1, 1, 2, 3]), [5, 5, 5, 5]])
    assert out["per_sample"]["unique_unigram_fraction"] == [0.75, 0.25]
    assert out["per_sample"]["repetition_rate"] == [0.25, 0.75]
    assert out["unique_unigram_fraction"] == 0.5
    assert out["repetition_rate"] == 0.5
    assert out["unigram_entropy"] == pytest.approx(0.75 * math.log(2))
    with pytest.raises(ValueError):
        diversity_stats([])
