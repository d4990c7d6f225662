"""The seq2seq benches keep the texts behind each metric row, and the rescore script recomputes
the columns from them (and the copy-source rows from the data) without the run folders."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("nltk")
pytest.importorskip("rouge_score")
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

import diffuseq_bench as DB  # noqa: E402
import seq2seq_rescore as R  # noqa: E402

from dlmkit.eval.metrics import seq2seq as sm  # noqa: E402
from dlmkit.eval.metrics.mbr import mbr_decode  # noqa: E402

SOURCES = ["how do i cook rice", "why is the sky blue", "who wrote hamlet"]
REFS = ["how to cook rice", "what makes the sky blue", "who is the author of hamlet"]
CANDS = [["how to cook rice", "cook rice how", "how cook the rice"], ["the sky blue", "sky is blue why", "why sky blue"],
         ["who wrote it", "hamlet author who", "who is the author"]]


def test_outputs_round_trip_and_rescore(tmp_path):
    stale = {"BLEU": 0.5, "bleu": 0.5, "rouge_l": 0.5, "dist1": 0.5}  # figures from an older metric
    first = DB.with_outputs({"system": "DiffuSeq", **stale}, SOURCES, REFS, [c[0] for c in CANDS], CANDS)
    mbr = DB.with_outputs({"system": "DiffuSeq MBR-3", **stale}, SOURCES, REFS, [c[1] for c in CANDS], CANDS, mbr=True)
    sweep = DB.with_outputs({"steps": 10, "BLEU": 0.5}, SOURCES, REFS, [c[2] for c in CANDS])
    report = {"tasks": [{"task": "qqp", "n_eval_sources": 3, "bleu_vs_steps": [sweep], "rows": [first, mbr],
                         "table": {"same row": first}}]}
    out = tmp_path / "r.json"
    DB.write_report(out, report)
    written = json.loads(out.read_text())
    assert "_outputs" not in json.dumps(written)
    assert len(out.with_suffix(".outputs.jsonl").read_text().splitlines()) == 3  # the shared row once

    new, cmp = R.rescore_report(out, tmp_path / "no-data")
    rows = new["tasks"][0]["rows"]
    assert rows[0]["bleu"] == pytest.approx(sm.bleu([c[0] for c in CANDS], REFS))
    assert rows[0]["self_bleu"] == pytest.approx(sm.seed_diversity(CANDS)["self_bleu"])
    assert new["tasks"][0]["table"]["same row"]["bleu"] == rows[0]["bleu"]  # every path of a shared row
    assert rows[1]["bleu"] == pytest.approx(sm.bleu(mbr_decode(CANDS), REFS))  # MBR chosen again
    assert new["tasks"][0]["bleu_vs_steps"][0]["BLEU"] == pytest.approx(sm.bleu([c[2] for c in CANDS], REFS))
    assert cmp["not_recomputed"] == [] and len(cmp["rescored"]) == 4
    row = next(r for r in cmp["rescored"] if r["row"] == "qqp / rows / DiffuSeq")
    assert row["changes"]["bleu"]["old"] == 0.5 and row["changes"]["bleu"]["new"] == rows[0]["bleu"]
