"""Condition building/validation, and the uniform graph's held-fixed conditioning bias by enumeration."""

import pytest
import torch
from toy import Toy, markov_chain

from dlmkit.diffusion.graphs import Uniform
from dlmkit.diffusion.schedules import Geometric
from dlmkit.errors import DlmError
from dlmkit.sampling.conditioning import Condition, conditioning_bias


def test_from_spans_places_prefix_suffix_and_infill():
    c = Condition.from_spans(8, prefix=[5, 6], suffix=[7], spans=[(3, [1, 2])])
    assert dict(zip(c.positions, c.token_ids)) == {0: 5, 1: 6, 7: 7, 3: 1, 4: 2}
    assert c.mask(8).tolist() == [True, True, False, True, True, False, False, True]
    x = c.apply(torch.zeros(2, 8, dtype=torch.long))
    assert x[1].tolist() == [5, 6, 0, 1, 2, 0, 0, 7]
    probs = c.fix_probs(torch.full((2, 8, 9), 1 / 9))
    assert probs[0, 3].tolist() == [0, 1] + [0] * 7 and probs[0, 2, 0] == pytest.approx(1 / 9)


@pytest.mark.parametrize("kwargs,message", [
    (dict(prefix=[1, 2, 3], suffix=[4, 5]), "overlap"),
    (dict(prefix=[1], spans=[(0, [2])]), "overlap"),
    (dict(spans=[(3, [1, 2])]), "sample length"),
    (dict(spans=[(-1, [1])]), "negative"),
])
def test_bad_conditions_raise_one_line_errors(kwargs, message):
    with pytest.raises(DlmError, match=message) as err:
        Condition.from_spans(4, **kwargs)
    assert "\n" not in str(err.value)


def test_uniform_held_fixed_conditioning_is_biased_and_clean_position_score_is_not():
    """Holding x^0 fixed with the unconditional score leaves a bias that more steps do not remove; the
    exact conditional score (what a clean_mask-trained model learns) leaves discretisation error only."""
    toy = Toy(markov_chain(3, 3, seed=5), 3, 3, "uniform")
    condition = Condition.from_spans(3, prefix=[1])
    clean_model = toy.conditional([0], [1])
    args = (Uniform(3), Geometric(1e-4, 20.0), 3, condition)
    held = [conditioning_bias(toy.data, toy.score_fn, *args, steps=s).tv for s in (32, 256)]
    clean = [conditioning_bias(toy.data, clean_model.score_fn, *args, steps=s).tv for s in (32, 256)]
    assert min(held) > 0.04 and held[1] > 0.8 * held[0]
    assert clean[1] < 0.003 and clean[1] < clean[0] / 4
    report = conditioning_bias(toy.data, clean_model.score_fn, *args, steps=8)
    assert report.exact.sum() == pytest.approx(1.0) and report.sampler.sum() == pytest.approx(1.0)
