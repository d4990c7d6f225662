import json
from pathlib import Path

import pytest

from dlmkit.cli import main
from dlmkit.quickstart import QUICK_KINDS


def test_quickstart_small_version(tmp_path, capsys, corpus):
    """Every LM kind trains, samples and lands in the report (a few steps on a small corpus)."""
    code = main(["quickstart", "--out", str(tmp_path / "qs"), "--data", str(corpus), "--steps", "3", "--no-progress", "--json"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0
    for said in ("training a byte-level BPE tokenizer", "kind 1/4: ar, 3 steps", "kind 4/4: sedd_uniform", "min left"):
        assert said in captured.err, said  # it says what it is doing
    result = json.loads(out.strip().splitlines()[-1])
    report = Path(result["report"])
    assert report.is_file() and Path(result["plot"]).stat().st_size > 1000
    kinds = [r["kind"] for r in result["runs"]]
    assert kinds == list(QUICK_KINDS) == ["ar", "mdlm", "sedd_absorb", "sedd_uniform"]
    text = report.read_text()
    assert all(f"| {k} |" in text for k in kinds) and "<= " in text


@pytest.mark.slow
def test_quickstart_as_the_readme_runs_it(tmp_path, capsys):
    """The README's command on the built-in corpus, within its 10-minute budget."""
    code = main(["quickstart", "--out", str(tmp_path / "qs"), "--no-progress", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and result["seconds"] < 600
    ar = next(r for r in result["runs"] if r["kind"] == "ar")
    assert ar["val_loss"] < 5.5


def test_every_trainable_kind_is_in_the_readme_kinds_table():
    """The quickstart's kinds, and every registered kind, each have a row in the README's table."""
    from dlmkit.methods.base import METHODS, get_method_class

    get_method_class("ar")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### Model kinds"):]
    table = table[: table.index("\n\n", table.index("| kind |"))]
    rows = {line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")}
    assert set(QUICK_KINDS) <= rows
    assert set(METHODS) - {"dlm_one"} <= rows, set(METHODS) - rows  # dlm_one: the DLM-One student, its own section
