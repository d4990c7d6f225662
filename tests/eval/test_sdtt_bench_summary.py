"""benchmarks/sdtt_bench.py's target summary: the teacher read off its temperature sweep at a
student's entropy (log-perplexity linear in entropy between the nearest rows), and the verdict."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from sdtt_bench import at_entropy, summarise  # noqa: E402


def row(model, steps, ppl, entropy, temperature=1.0, stderr=0.01):
    return {"model": model, "steps": steps, "gen_ppl": ppl, "unigram_entropy": entropy, "temperature": temperature,
            "judge_nll_stderr": stderr}


def test_at_entropy_interpolates_log_perplexity():
    gen = [row("teacher", 4, 50.0, 2.8), row("teacher", 4, 40.0, 2.7, 0.9), row("teacher", 4, 30.0, 2.6, 0.8), row("other", 4, 1.0, 2.75)]
    assert at_entropy(gen, "teacher", 4, 2.7) == pytest.approx(40.0)
    assert at_entropy(gen, "teacher", 4, 2.75) == pytest.approx(math.sqrt(40.0 * 50.0))  # halfway in log space
    assert at_entropy(gen, "teacher", 4, 2.9) is None and at_entropy(gen, "teacher", 8, 2.7) is None


def test_summary_compares_at_the_students_steps_and_entropy():
    args = argparse.Namespace(start_steps=8, rounds=1, variants=["reference:rkl"])
    gen = [row("teacher", 8, 20.0, 2.8), row("teacher", 8, 16.0, 2.7, 0.9), row("teacher", 4, 40.0, 2.8),
           row("teacher", 4, 32.0, 2.7, 0.9), row("student reference:rkl round 1", 4, 36.0, 2.75)]
    result = {"gen": gen}
    summarise(args, result)
    (t,) = result["target"]
    assert t["steps"] == 4 and t["gen_ppl_ratio"] == pytest.approx(36.0 / 20.0)
    assert t["gen_ppl_ratio_same_steps"] == pytest.approx(36.0 / 40.0)
    assert t["gen_ppl_ratio_at_equal_entropy"] == pytest.approx(36.0 / math.sqrt(16.0 * 20.0))
    assert t["gen_ppl_ratio_same_steps_at_equal_entropy"] == pytest.approx(36.0 / math.sqrt(32.0 * 40.0))
    assert t["log_ratio_stderr"] == pytest.approx(math.sqrt(2) * 0.01)
    assert t["within_5pct_at_equal_entropy"] is False
    (entry,) = result["at_equal_entropy"]  # the student's row against the 4-step teacher cooled to its entropy
    assert entry["gen_ppl_ratio"] == pytest.approx(t["gen_ppl_ratio_same_steps_at_equal_entropy"])
