"""degeneracy(): exact fractions on hand-made outputs, and `dlm eval degeneracy` (a task added
through the registry: metric module, task module, one registration)."""

import json

from dlmkit.cli import main
from dlmkit.eval.metrics.degeneracy import degeneracy


def test_degeneracy_exact_fractions():
    outs = ["", "   ", "a a a b", "a a b b", "a", "x y z", "b b"]
    # empty: "" and "   "; repeat (>= 2 tokens, one token > half): "a a a b" (3/4), "b b" (2/2);
    # "a a b b" is exactly half (not more), "a" has one token
    assert degeneracy(outs) == {"empty": 2 / 7, "repeat": 2 / 7}
    assert degeneracy([]) == {"empty": 0.0, "repeat": 0.0}


def test_dlm_eval_degeneracy_json(tmp_path, capsys):
    hyp = tmp_path / "out.jsonl"
    hyp.write_text("\n".join(json.dumps({"recover": r, "reference": "ref"}) for r in ["the the the cat", "a b c d", "[PAD] [PAD]"]) + "\n")
    assert main(["eval", "degeneracy", "--hyp", str(hyp), "--json"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["degeneracy"]
    # DiffuSeq cleaning drops the padding: the third output is empty
    assert got == {"hyp": str(hyp), "n": 3, "empty": 1 / 3, "repeat": 1 / 3}


def test_dlm_eval_degeneracy_missing_file(tmp_path, capsys):
    assert main(["eval", "degeneracy", "--hyp", str(tmp_path / "none.txt")]) != 0
    assert capsys.readouterr().err.startswith("error: ")
