import json
import math
import os

import pytest
from readme_packages import require  # README-installed: fail, never skip

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

for _extra in ("nltk", "rouge_score", "sacrebleu"):
    require(_extra)

from nltk.translate.bleu_score import SmoothingFunction  # noqa: E402
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu  # noqa: E402

from dlmkit.errors import DlmError  # noqa: E402
from dlmkit.eval.metrics import seq2seq as sm  # noqa: E402

HYP = "the cat sat on the mat"
REF = "the cat sat on the mat today"


def nltk_bleu(references, hypothesis):
    return nltk_sentence_bleu(
        [r.split() for r in references], hypothesis.split(),
        smoothing_function=SmoothingFunction().method4,
    )


def test_sentence_bleu_uses_the_standard_argument_order():
    # DiffuSeq's current script: gold as NLTK reference (7 tokens), output as hypothesis (6):
    # every n-gram precision 1, brevity penalty exp(1 - 7/6).
    assert sm.sentence_bleu(HYP, REF) == pytest.approx(math.exp(-1 / 6))
    assert sm.sentence_bleu(HYP, REF) == nltk_bleu([REF], HYP)
    # The November 2022 script's swapped order: precisions 6/7, 5/6, 4/5, 3/4 -> (3/7) ** (1/4)
    assert nltk_bleu([HYP], REF) == pytest.approx((3 / 7) ** 0.25)
    assert sm.sentence_bleu(HYP, REF) != pytest.approx(nltk_bleu([HYP], REF))
    assert sm.sentence_bleu("", REF) == 0.0


def test_bleu_is_mean_of_sentence_bleu():
    hyps, refs = [HYP, "a b c"], [REF, "a b d"]
    expected = (nltk_bleu([REF], HYP) + nltk_bleu(["a b d"], "a b c")) / 2
    assert sm.bleu(hyps, refs) == pytest.approx(expected)
    with pytest.raises(DlmError, match="2 outputs but 1 references"):
        sm.bleu(hyps, refs[:1])


def test_multi_reference_bleu_clips_over_all_references():
    hyp, refs = "a b c d e", ["a b c d x", "y b c d e"]
    # Every n-gram of hyp is in one of the references and lengths match: BLEU = 1.
    assert sm.multi_ref_sentence_bleu(hyp, refs) == pytest.approx(1.0)
    # Against the first reference alone: p1..p4 = 4/5, 3/4, 2/3, 1/2 -> (1/5) ** (1/4)
    assert sm.multi_ref_sentence_bleu(hyp, refs[:1]) == pytest.approx(0.2**0.25)
    assert sm.multi_ref_sentence_bleu(hyp, refs[:1]) == nltk_bleu(refs[:1], hyp)
    assert sm.multi_ref_bleu([hyp, hyp], [refs, refs[:1]]) == pytest.approx((1 + 0.2**0.25) / 2)


def test_corpus_bleu_equals_sacrebleu():
    import sacrebleu

    hyps = ["the cat sat on the mat .", "a dog barks"]
    refs = [
        ["the cat sat on a mat .", "a cat sat on the mat ."],
        ["the dog barks", "a dog is barking"],
    ]
    direct = sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs], [r[1] for r in refs]]).score
    assert sm.corpus_bleu(hyps, refs) == pytest.approx(direct)
    with pytest.raises(DlmError, match="same number of references"):
        sm.corpus_bleu(hyps, [refs[0], refs[1][:1]])


def test_rouge_l_by_hand_and_equals_rouge_score():
    from rouge_score import rouge_scorer

    # LCS("the cat sat on the mat", "the cat is on the mat") = 5 -> P = R = F = 5/6
    hyps, refs = [HYP, "cats running"], ["the cat is on the mat", "cat run"]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    direct = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)]
    assert direct[0] == pytest.approx(5 / 6)
    assert direct[1] == 0.0  # no stemming, as DiffuSeq (torchmetrics' ROUGEScore default)
    assert sm.rouge_l(hyps, refs) == pytest.approx(sum(direct) / 2)
    assert sm.rouge_l(["The Cat."], ["the cat"]) == 1.0  # rouge-score lowercases, drops punctuation
    assert sm.rouge_l([HYP], [["x y", "the cat is on the mat"]]) == pytest.approx(5 / 6)


def test_dist1_by_hand():
    assert sm.dist1(["a b a c", "x x", ""]) == pytest.approx((3 / 4 + 1 / 2 + 0) / 3)


def test_self_bleu_and_div4_like_diffuseq():
    cands = ["a b c d e", "a b c d f", "q r s t u"]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = sum(nltk_bleu([cands[j]], cands[i]) for i, j in pairs) / 3  # earlier one as output
    assert sm.self_bleu(cands) == pytest.approx(expected)
    assert sm.self_bleu(["a b c d", "a b c d"]) == pytest.approx(1.0)
    assert sm.self_bleu(["only one"]) == 0.0
    # 4-grams: abcd bcde | abcd bcdf | qrst rstu -> 5 distinct of 6
    assert sm.div4(cands) == pytest.approx(5 / 6)
    out = sm.seed_diversity([cands, ["a b c d", "a b c d"]])
    assert out["div4"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert out["self_bleu"] == pytest.approx((expected + 1.0) / 2)


def test_group_by_source():
    assert sm.group_by_source([["s0a", "s1a"], ["s0b", "s1b"]]) == [["s0a", "s0b"], ["s1a", "s1b"]]
    with pytest.raises(DlmError):
        sm.group_by_source([["a"], ["a", "b"]])


def test_evaluate_seq2seq_single_and_multi_reference():
    out = sm.evaluate_seq2seq(
        [HYP, "a b c"], [REF, "a b d"], sources=["x y", "z"],
        candidates=[[HYP, REF], ["a b c", "a b d"]],
    )
    assert out["n"] == 2
    assert out["bleu"] == pytest.approx(sm.bleu([HYP, "a b c"], [REF, "a b d"]))
    assert out["rouge_l"] == pytest.approx(sm.rouge_l([HYP, "a b c"], [REF, "a b d"]))
    assert out["dist1"] == pytest.approx((5 / 6 + 1) / 2)
    assert (out["hyp_len"], out["ref_len"], out["src_len"]) == (4.5, 5.0, 1.5)
    assert out["avg_len"] == 4.5
    assert sm.evaluate_seq2seq([" a  b ", ""], ["a b", "c"])["avg_len"] == (5 + 1) / 2  # str.split(' ')
    assert set(out) >= {"self_bleu", "div4"} and "bertscore_f1" not in out

    multi = sm.evaluate_seq2seq(["a b c d e"], [["a b c d x", "y b c d e"]])
    assert multi["multi_ref_bleu"] == pytest.approx(1.0)
    assert "corpus_bleu" in multi and "bleu" not in multi
    with pytest.raises(DlmError, match="sources"):
        sm.evaluate_seq2seq([HYP], [REF], sources=["a", "b"])


def test_missing_extra_is_a_one_line_dlm_error():
    with pytest.raises(DlmError, match=r"pip install 'dlmkit\[eval\]'"):
        sm.import_eval_dependency("surely_not_installed_module_xyz")


# --------------------------------------------------------------------------- readers


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_read_diffuseq_input_and_output_formats(tmp_path):
    _write_jsonl(tmp_path / "test.jsonl", [{"src": "a b", "trg": "c d"}, {"src": "e", "trg": "f"}])
    data = sm.read_diffuseq_jsonl(tmp_path / "test.jsonl")
    assert (data.sources, data.references, data.hypotheses) == (["a b", "e"], ["c d", "f"], None)

    _write_jsonl(tmp_path / "seed0.json", [{
        "recover": "[CLS] the cat [SEP] [PAD] [PAD]",
        "reference": "[CLS] the dog [SEP]",
        "source": "[CLS] a pet [SEP]",
    }])
    out = sm.read_diffuseq_jsonl(tmp_path / "seed0.json")
    # DiffuSeq: strip, then delete the tokens (nothing in their place, spaces left as they are)
    assert (out.sources, out.references, out.hypotheses) == ([" a pet "], [" the dog "], [" the cat   "])


def test_diffuseq_cleaning():
    assert sm.clean_output("  What[PAD]is [CLS]this[SEP] [PAD] ") == "Whatis this "
    assert sm.clean_output("[CL[SEP]S] a") == " a"  # its order: [SEP] first, then [CLS]
    assert sm.clean_reference("[CLS] keep [PAD] [SEP]") == " keep [PAD] "  # references keep [PAD]
    assert sm.clean_source("[CLS] src [PAD] [SEP]") == " src [PAD] "


def test_read_diffuseq_errors(tmp_path):
    with pytest.raises(DlmError, match="no such file"):
        sm.read_diffuseq_jsonl(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DlmError, match="empty file"):
        sm.read_diffuseq_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"src": "a", "trg": "b"}\n{oops\n')
    with pytest.raises(DlmError, match=r"bad.jsonl:2: not JSON"):
        sm.read_diffuseq_jsonl(tmp_path / "bad.jsonl")
    _write_jsonl(tmp_path / "keys.jsonl", [{"src": "a", "trg": "b"}, {"src": "a"}])
    with pytest.raises(DlmError, match=r"keys.jsonl:2: missing string field\(s\) trg"):
        sm.read_diffuseq_jsonl(tmp_path / "keys.jsonl")


def test_read_lines_replaces_invalid_utf8_with_warning(tmp_path):
    (tmp_path / "x.txt").write_bytes(b"caf\xe9 ok\nsecond\n")
    with pytest.warns(UserWarning, match="not valid UTF-8"):
        assert sm.read_lines(tmp_path / "x.txt") == ["caf\ufffd ok", "second"]


def test_read_asset_multi_reference(tmp_path):
    (tmp_path / "asset.test.orig").write_text("s0\ns1\n")
    for i in range(10):
        (tmp_path / f"asset.test.simp.{i}").write_text(f"r{i}a\nr{i}b\n")
    sources, refs = sm.read_asset(tmp_path)
    assert sources == ["s0", "s1"]
    assert refs[0] == [f"r{i}a" for i in range(10)] and refs[1][9] == "r9b"

    (tmp_path / "asset.test.simp.3").write_text("only one line\n")
    with pytest.raises(DlmError, match="asset.test.simp.3 has 1 lines but .* has 2"):
        sm.read_asset(tmp_path)
    with pytest.raises(DlmError, match="no such file"):
        sm.read_asset(tmp_path, split="valid")


@pytest.mark.parametrize("corpus", ["asset", "turkcorpus"])
def test_multi_reference_on_real_sets_matches_nltk_rouge_score_sacrebleu(shared_data, corpus):
    """ASSET test (10 references) and TurkCorpus valid (8, grouped by source): dlmkit's figures
    equal direct nltk / rouge-score / sacreBLEU calls, for a copy of the source and a damaged one."""
    import sacrebleu
    from rouge_score import rouge_scorer

    root = shared_data / "seq2seq" / corpus
    if corpus == "asset":
        sources, refs = sm.read_asset(root)
    else:
        groups: dict[str, list[str]] = {}
        for line in (root / "valid.tsv").read_text(encoding="utf-8").splitlines():
            s, r = line.split("\t")
            groups.setdefault(s, []).append(r)
        sources, refs = list(groups), list(groups.values())
    sources, refs = sources[:40], refs[:40]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for hyps in (sources, [" ".join(s.split()[::2]).lower() for s in sources]):
        out = sm.evaluate_seq2seq(hyps, refs)
        want_bleu = sum(nltk_bleu(r, h) for h, r in zip(hyps, refs)) / len(hyps)
        want_rouge = sum(scorer.score_multi(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / len(hyps)
        n = min(len(r) for r in refs)
        want_corpus = sacrebleu.corpus_bleu(hyps, [[r[i] for r in refs] for i in range(n)]).score
        assert out["multi_ref_bleu"] == pytest.approx(want_bleu, abs=1e-12)
        assert out["rouge_l"] == pytest.approx(want_rouge, abs=1e-12)
        if all(len(r) == n for r in refs):
            assert out["corpus_bleu"] == pytest.approx(want_corpus, abs=1e-9)
