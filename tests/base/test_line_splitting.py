"""Text readers split on newlines only: U+2028, U+0085, form feeds and other Unicode line breaks
inside a text stay in it, so dlmkit reads its own ``ensure_ascii=False`` jsonl and rows of plain
text files never shift."""

from __future__ import annotations

import json

from dlmkit.eval.tasks.mauve import read_documents
from dlmkit.eval.metrics.seq2seq import read_diffuseq_jsonl, read_lines
from dlmkit.io import jsonl_records, split_lines

ODD = ["a\u2028b", "c\u0085d", "e\x0cf", "g\x0bh", "i\x1cj", "k\u2029l"]


def test_split_lines_splits_on_newlines_only():
    text = "".join(t + "\n" for t in ODD)
    assert split_lines(text) == ODD
    assert split_lines("x\r\ny\n\nz") == ["x", "y", "", "z"]
    assert split_lines("") == [] and split_lines("\n") == [""]


def test_jsonl_with_raw_unicode_breaks_reads_back(tmp_path):
    path = tmp_path / "out.jsonl"
    rows = [{"recover": t, "reference": t, "source": t} for t in ODD]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert [r for _, r in jsonl_records(path, path.read_text(encoding="utf-8"))] == rows
    assert len(read_diffuseq_jsonl(path).hypotheses) == len(ODD)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in ODD), encoding="utf-8")
    assert read_documents(docs) == ODD


def test_plain_text_rows_do_not_shift(tmp_path):
    path = tmp_path / "hyp.txt"
    path.write_text("".join(t + "\n" for t in ODD) + "last\r\n", encoding="utf-8", newline="")
    assert read_lines(path) == [*ODD, "last"]
    plain = tmp_path / "docs.txt"
    plain.write_bytes("".join(t + "\n" for t in ODD).encode("utf-8"))
    assert read_documents(plain) == ODD
