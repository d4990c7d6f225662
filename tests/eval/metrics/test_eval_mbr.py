import numpy as np
import pytest
from readme_packages import require  # README-installed: fail, never skip

require("nltk")

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu  # noqa: E402

from dlmkit.eval.metrics.mbr import mbr_decode, mbr_select  # noqa: E402

CANDIDATES = [
    "dogs bark loudly at night near the river",
    "the cat sat on a mat",
    "the cat sat on the mat",  # consensus: closest to all the others
    "the cat sat on the mat today",
    "a cat sat on the mat",
]


def test_mbr_picks_the_consensus_candidate():
    assert mbr_select(CANDIDATES) == (2, "the cat sat on the mat")


def test_mbr_matches_diffuseq_selection():
    # DiffuSeq's selectBest: bleu[i][j] = sentence_bleu([c_j], c_i), zero diagonal, argmax row sum.
    smooth = SmoothingFunction().method4
    m = np.array([
        [sentence_bleu([b.split()], a.split(), smoothing_function=smooth) for b in CANDIDATES]
        for a in CANDIDATES
    ])
    np.fill_diagonal(m, 0)
    assert mbr_select(CANDIDATES)[0] == int(np.argmax(m.sum(-1)))


def test_mbr_ties_and_edge_cases():
    assert mbr_select(["x y", "x y"]) == (0, "x y")
    assert mbr_select(["alone"]) == (0, "alone")
    assert mbr_decode([CANDIDATES, ["a b", "c d", "a b"]]) == ["the cat sat on the mat", "a b"]
    with pytest.raises(ValueError):
        mbr_select([])
