"""The `dlm` command end to end, in-process: JSON last lines and one-line errors."""

import json
import sys
from pathlib import Path

import pytest

from dlmkit.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory, tiny_overrides):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "tiny", *tiny_overrides, "train.steps=6", f"data.train={corpus}", f"out_dir={out}", "--no-progress"]) == 0
    return out


def test_train_sample_eval_json(trained, corpus, capsys):
    code, out, _ = run(capsys, "sample", str(trained), "--n", "3", "--length", "12", "--prefix", "The", "--json")
    assert code == 0
    result = last_json(out)
    assert len(result["texts"]) == 3 and all(len(ids) == 12 for ids in result["token_ids"])
    code, out, _ = run(capsys, "eval", str(trained), "--data", str(corpus), "--max-sequences", "8", "--json")
    assert code == 0
    row = last_json(out)["ppl"][0]
    assert row["kind"] == "ar" and not row["bound"] and row["ppl"] > 1 and row["sequences"] == 8
    assert row["ppl_seq_mean"] >= row["ppl"] - 1e-9  # Jensen


def test_sample_progress_bar_and_no_progress(trained, capsys, monkeypatch):
    """`dlm sample` shows a progress bar over its batches when stderr is a terminal (a log or a pipe
    gets none); --no-progress turns it off; the samples are the same."""
    argv = ["sample", str(trained), "--n", "4", "--batch-size", "2", "--length", "8", "--json"]
    code, out, err = run(capsys, *argv)
    assert code == 0 and err == ""
    monkeypatch.setattr(type(sys.stderr), "isatty", lambda self: True, raising=False)
    code, bar_out, bar_err = run(capsys, *argv)
    assert code == 0 and "sample:" in bar_err and "/2" in bar_err
    code, quiet_out, quiet_err = run(capsys, *argv, "--no-progress")
    assert code == 0 and quiet_err == ""
    assert last_json(quiet_out)["token_ids"] == last_json(bar_out)["token_ids"] == last_json(out)["token_ids"]


def test_resume_with_more_steps(trained, capsys):
    code, out, _ = run(capsys, "train", "--resume", str(trained), "train.steps=8", "--no-progress", "--json")
    assert code == 0 and last_json(out)["steps"] == 8


def errors(capsys, *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_bad_input_is_one_line_error(trained, corpus, tmp_path, capsys, tiny_overrides, shared_data):
    base = ["train", "tiny", *tiny_overrides, "--no-progress"]
    assert "missing.txt" in errors(capsys, *base, f"data.train={tmp_path / 'missing.txt'}", f"out_dir={tmp_path / 'a'}")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert "empty.txt" in errors(capsys, *base, f"data.train={empty}", f"out_dir={tmp_path / 'b'}")
    small = tmp_path / "small.txt"
    small.write_text("just a few words")
    gpt2 = shared_data / "tokenizers" / "gpt2"
    assert "fewer than one block" in errors(capsys, *base, "tokenizer.kind=gpt2", f"tokenizer.path={gpt2}", f"data.train={small}", f"out_dir={tmp_path / 'c'}")
    assert "train.stepz" in errors(capsys, *base, "train.stepz=3", f"data.train={corpus}")
    assert "not a dlmkit run folder" in errors(capsys, "train", "--resume", str(tmp_path))
    assert "longer than the model's context" in errors(capsys, "sample", str(trained), "--length", "999")
    assert "holds" in errors(capsys, "sample", str(trained), "--length", "4", "--prefix", "a long prefix that does not fit in four tokens")
    assert "prefix" in errors(capsys, "sample", str(trained), "--suffix", "the end")
    assert "no such" in errors(capsys, "sample", str(tmp_path / "nothing"))
    assert "POSITION:TEXT" in errors(capsys, "sample", str(trained), "--infill", "abc")
    assert "no training data" in errors(capsys, "train", "tiny", f"out_dir={tmp_path / 'd'}")


def test_non_utf8_text_is_replaced_with_a_warning(corpus, tmp_path, capsys, tiny_overrides):
    data = tmp_path / "latin1"
    data.mkdir()
    for p in sorted(Path(corpus).iterdir())[:20]:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "bad.txt").write_bytes("caf\xe9 au lait ".encode("latin-1") * 50)
    with pytest.warns(UserWarning, match="bad.txt"):
        code = main(["train", "tiny", *tiny_overrides, "train.steps=1", f"data.train={data}", f"out_dir={tmp_path / 'run'}", "--no-progress"])
    assert code == 0
