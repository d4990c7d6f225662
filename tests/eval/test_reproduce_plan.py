"""benchmarks/reproduce.py: every (paper, scale) has a plan whose commands call scripts that exist
with options those scripts define, the dry run prints it with its expected time and runs nothing."""

import importlib
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import reproduce as R  # noqa: E402


@pytest.mark.parametrize("paper", R.PAPERS)
@pytest.mark.parametrize("scale", R.SCALES)
def test_plan_calls_existing_scripts_with_their_options(paper, scale, tmp_path):
    steps = R.plan(paper, scale, tmp_path / "out", tmp_path / "work", tmp_path / "ckpt", tmp_path / "data", "lambada.txt")
    assert steps and all(s.seconds > 0 and s.outputs for s in steps)
    for s in steps:
        if s.argv[1] == "-m":  # dlm subcommand: its options are checked by the CLI tests
            continue
        script = REPO / s.argv[1]
        assert script.is_file(), s.argv[1]
        if script.stem in ("diffuseq_bench", "dlm_one_bench"):  # their own parser accepts the whole line
            importlib.import_module(script.stem).parse_args(s.argv[2:])
            continue
        source = script.read_text()
        for opt in (a for a in s.argv[2:] if a.startswith("--")):
            assert re.search(rf"[\"']{re.escape(opt)}[\"']", source), f"{script.name} has no option {opt}"
        assert all(str(tmp_path / "out") in o for o in s.outputs)


def test_gpu_plans_show_the_papers_numbers():
    assert R.PAPER["sedd-eval"]["gpt2 wikitext2 ppl"] == 39.576  # Deschenaux & Gulcehre, Table 1
    assert R.PAPER["dlm-one"]["qqp teacher BLEU"] == 0.1829  # DLM-One, Table 1
    got = {"qqp teacher BLEU": 0.2}
    assert R.plot_comparison(R.PAPER["dlm-one"], {}, Path("unused.png")) is None  # nothing shared, no plot
    assert "qqp teacher BLEU" in R.PAPER["dlm-one"] and got


def test_dry_run_prints_plan_and_time_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert R.main(["--paper", "dlm-one", "--scale", "cpu", "--dry-run", "--out-dir", str(out), "--work", str(tmp_path / "w")]) == 0
    text = capsys.readouterr().out
    assert re.search(r"2 steps, expected \d+ h \d\d min", text)
    assert "diffuseq_bench.py" in text and "dlm_one_bench.py" in text
    assert not out.exists() and not (tmp_path / "w").exists()


def test_measured_figures_are_read_from_the_steps_json(tmp_path):
    (tmp_path / "eval_suite").mkdir()
    rows = [{"kind": "ar", "model": "ckpt/gpt2", "data": "d/lm/wikitext2/raw.test.txt", "ppl": 40.0, "bound": False},
            {"kind": "sedd_absorb", "model": "ckpt/sedd-small", "data": "d/lm/ptb/ptb.test.txt", "ppl": 111.0, "bound": True}]
    (tmp_path / "eval_suite" / "results.json").write_text(R.json.dumps({"ppl": rows}))
    got = R.measured("sedd-eval", tmp_path)
    assert got == {"gpt2 wikitext2 ppl": 40.0, "sedd-small ptb ppl (<=)": 111.0}
    assert set(got) <= set(R.PAPER["sedd-eval"])
    md = R.report("sedd-eval", "gpu", [], tmp_path)
    assert "| gpt2 wikitext2 ppl | 39.58 | 40 |" in md and "| gpt2 lambada ppl | 44.66 | - |" in md


def test_unknown_paper_is_one_line_error(capsys):
    with pytest.raises(SystemExit) as e:
        R.main(["--paper", "nope", "--scale", "cpu"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
