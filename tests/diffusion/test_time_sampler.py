"""Uniform and loss-aware (second-moment) sampling of training timesteps."""

import math

import pytest
import torch

from dlmkit.diffusion.gaussian import LossSecondMomentSampler, UniformTimeSampler, get_time_sampler
from dlmkit.errors import DlmError


def _warm(sampler, T, history):
    """Feed history + 2 losses per t (so the oldest two are shifted out); return the kept ones."""
    kept = {}
    for k in range(history + 2):
        ts = torch.arange(T)
        losses = (ts + 1).double() * (k + 1)  # loss of t at round k: (t+1)(k+1)
        sampler.update(ts, losses)
    for t in range(T):
        kept[t] = [(t + 1) * (k + 1) for k in range(2, history + 2)]
    return kept


def test_loss_aware_probs_follow_definition():
    T, H, u = 5, 3, 0.01
    s = LossSecondMomentSampler(T, history=H, uniform_prob=u)
    s.update(torch.arange(T - 1), torch.ones(T - 1))
    assert not s.warmed_up() and torch.allclose(s.probs(), torch.full((T,), 1 / T, dtype=torch.float64))
    s = LossSecondMomentSampler(T, history=H, uniform_prob=u)
    kept = _warm(s, T, H)
    assert s.warmed_up()
    rms = [math.sqrt(sum(v * v for v in kept[t]) / H) for t in range(T)]
    want = [(1 - u) * r / sum(rms) + u / T for r in rms]
    assert s.probs().tolist() == pytest.approx(want, rel=1e-12)

    n = 40000
    t, w = s.sample(n, torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and w.shape == (n,)
    p = torch.tensor(want)
    assert torch.allclose(w, 1 / (T * p[t]).float())
    freq = torch.bincount(t, minlength=T).double() / n
    assert ((freq - p).abs() < 5 * (p * (1 - p) / n).sqrt()).all()
    assert float(w.double().mean()) == pytest.approx(1.0, abs=0.03)  # E[1 / (T p(t))] = 1


def test_loss_aware_state_round_trip():
    T = 7
    s = LossSecondMomentSampler(T, history=2)
    _warm(s, T, 2)
    s.update(torch.tensor([3, 3]), torch.tensor([100.0, 200.0]))
    state = s.state_dict()
    r = LossSecondMomentSampler(T, history=2)
    r.load_state_dict(state)
    assert torch.equal(r.probs(), s.probs())
    draw = lambda smp: smp.sample(64, torch.Generator().manual_seed(3))[0]  # noqa: E731
    assert torch.equal(draw(r), draw(s))
    s.update(torch.tensor([0]), torch.tensor([1e6]))  # the snapshot is a copy
    assert not torch.equal(r.probs(), s.probs())
    with pytest.raises(ValueError):
        LossSecondMomentSampler(T, history=3).load_state_dict(state)


def test_uniform_sampler_and_factory():
    s = get_time_sampler("uniform", 10)
    assert isinstance(s, UniformTimeSampler)
    t, w = s.sample(1000, torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() <= 9 and torch.equal(w, torch.ones(1000))
    assert isinstance(get_time_sampler("lossaware", 10), LossSecondMomentSampler)
    with pytest.raises(DlmError):
        get_time_sampler("fixstep", 10)
