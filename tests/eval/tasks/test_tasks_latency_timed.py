"""latency.timed: the one timing helper of the latency benchmark and benchmarks/discrete_lm.py:
the device is synchronised before and after the timed call."""

import time

import torch

from dlmkit.eval.tasks import latency


def test_timed_returns_output_and_wall_time():
    out, seconds = latency.timed(lambda: (time.sleep(0.02), 7)[1], torch.device("cpu"))
    assert out == 7
    assert 0.02 <= seconds < 1.0


def test_timed_synchronises_a_gpu_around_the_call(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("sync", str(device))))
    out, _ = latency.timed(lambda: calls.append("run") or "done", torch.device("cuda:0"))
    assert out == "done"
    assert calls == [("sync", "cuda:0"), "run", ("sync", "cuda:0")]
