"""``metrics.jsonl`` is read one way everywhere (``dlmkit.io.read_jsonl_log``): by ``dlm plot`` and by
the truncation on resume. A last line torn by a kill is dropped; a damaged line elsewhere is a
one-line error naming the file and line, never skipped silently."""

from __future__ import annotations

import json

import pytest

from dlmkit.cli import main
from dlmkit.engine.curves import read_metrics
from dlmkit.errors import DlmError
from dlmkit.io import read_jsonl_log, rewrite_jsonl

ROWS = [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.5, "note": "a\u2028b"}, {"step": 3, "loss": 4.0}]


def write(path, tail: str = "") -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS) + tail, encoding="utf-8")


def test_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write(path, '{"step": 4, "lo')  # a kill in the middle of a write
    assert [row for _, row in read_jsonl_log(path)] == ROWS
    assert read_metrics(tmp_path) == ROWS
    write(path, '{"step": 4, "lo\n\n')  # blank lines after it change nothing
    assert read_metrics(path) == ROWS
    rewrite_jsonl(path, lambda r: r["step"] != 2)
    assert [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x] == [ROWS[0], ROWS[2]]


@pytest.mark.parametrize("bad,message", [('{"step": 1.5, "lo', r"metrics.jsonl:2: not JSON"),
                                         ("[1, 2]", r"metrics.jsonl:2: expected a JSON object")])
def test_a_damaged_line_in_the_middle_is_an_error(tmp_path, capsys, bad, message):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps(r) for r in ROWS]
    text = "\n".join([lines[0], bad, *lines[1:]]) + "\n"
    path.write_text(text, encoding="utf-8")
    for read in (read_jsonl_log, read_metrics, lambda p: rewrite_jsonl(p, lambda r: True)):
        with pytest.raises(DlmError, match=message):
            read(path)
    assert path.read_text(encoding="utf-8") == text  # nothing rewritten
    code = main(["plot", str(tmp_path), "--out", str(tmp_path / "curves.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "metrics.jsonl:2" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "curves.png").exists()
