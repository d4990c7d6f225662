"""benchmarks/dlm_one_bench.py's latency table: systems interleaved within each round, medians
over rounds, batch 1 over the first sources one at a time and batch b over one full batch."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import dlm_one_bench as B  # noqa: E402


def test_latency_tables_interleave_and_take_medians(monkeypatch):
    calls = []
    times = iter([5.0, 1.0, 9.0, 2.0, 7.0, 3.0] + [4.0, 8.0, 6.0, 1.0, 2.0, 3.0])

    def fake(model, tok, sources, *, steps, max_src_len, batch_size=1, options=None):
        calls.append((model, steps, len(sources), batch_size))
        return next(times)

    monkeypatch.setattr(B, "latency", fake)
    systems = {"teacher": ("T", 2000), "student": ("S", 1)}
    out = B.latency_tables(systems, None, ["a", "b", "c"], batches=[1, 4], n_one=2, repeats=3, max_src_len=0)
    assert [c[0] for c in calls] == ["T", "S"] * 6  # interleaved: every round times every system
    assert calls[0] == ("T", 2000, 2, 1) and calls[6] == ("T", 2000, 4, 4)  # batch 1: n_one sources; batch 4: one full batch
    assert out == {"1": {"teacher": 7.0, "student": 2.0}, "4": {"teacher": 4.0, "student": 3.0}}
