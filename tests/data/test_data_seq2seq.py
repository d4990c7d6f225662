"""Seq2seq pairs (DiffuSeq jsonl), padding with truncation counts, multi-reference sets."""

import numpy as np
import pytest

from dlmkit.data.seq2seq import encode_pairs, load_multi_reference, load_pairs
from dlmkit.errors import DlmError


def test_load_real_pairs(shared_data):
    path = shared_data / "seq2seq" / "qqp" / "valid.jsonl"
    pairs = load_pairs(path)
    assert len(pairs) == sum(1 for line in path.read_text(encoding="utf-8").split("\n") if line.strip())
    assert all(isinstance(s, str) and isinstance(t, str) for s, t in pairs)


def test_load_pairs_jsonl_and_tsv(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"q": "a?", "a": "b."}\n\n{"q": "c?", "a": "d."}\n', encoding="utf-8")
    assert load_pairs(f, "q", "a") == [("a?", "b."), ("c?", "d.")]
    t = tmp_path / "p.tsv"
    t.write_text("src one\tref one\nsrc two\tref two\n", encoding="utf-8")
    assert load_pairs(t) == [("src one", "ref one"), ("src two", "ref two")]


@pytest.mark.parametrize("content,match", [
    ('{"src": "a", "trg": "b"}\n{"src": "a", "trg": \n', r"bad.jsonl:2: bad JSON"),
    ('{"src": "a", "trg": "b"}\n{"src": "a"}\n', r"bad.jsonl:2: no field 'trg'"),
    ("\n \n", r"bad.jsonl: empty file"),
])
def test_load_pairs_errors(tmp_path, content, match):
    f = tmp_path / "bad.jsonl"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(DlmError, match=match):
        load_pairs(f)


def test_load_pairs_missing_file(tmp_path):
    with pytest.raises(DlmError, match="nope.jsonl not found"):
        load_pairs(tmp_path / "nope.jsonl")


def test_encode_pairs_pads_and_counts_truncation(bpe):
    pairs = [("short", "tiny"), ("a much longer source sentence than fits", "ok"),
             ("mid", "a target that is far too long for the limit")]
    data = encode_pairs(pairs, bpe, max_src=4, max_trg=5)
    assert len(data) == 3 and data.src_ids.shape == (3, 4) and data.trg_ids.shape == (3, 5)
    assert data.src_ids.dtype == np.int64
    assert (data.n_src_truncated, data.n_trg_truncated) == (1, 1)
    for i, (src, trg) in enumerate(pairs):
        s, t = bpe.encode(src), bpe.encode(trg)
        assert data.src_len[i] == min(len(s), 4) and data.trg_len[i] == min(len(t), 5)
        assert data.src_ids[i, : data.src_len[i]].tolist() == s[:4]
        assert (data.src_ids[i, data.src_len[i]:] == bpe.pad_id).all()
        assert (data.trg_ids[i, data.trg_len[i]:] == bpe.pad_id).all()
    assert bpe.decode(data.src_ids[0, : data.src_len[0]]) == "short"


def test_multi_reference_asset(shared_data):
    folder = shared_data / "seq2seq" / "asset"
    refs = load_multi_reference(folder / "asset.test.orig", str(folder / "asset.test.simp.*"))
    assert len(refs.sources) == 359 and all(len(r) == 10 for r in refs.references)
    first = [(folder / f"asset.test.simp.{k}").read_text(encoding="utf-8").split("\n")[0] for k in range(10)]
    assert refs.references[0] == first


def test_multi_reference_natural_order_and_mismatch(tmp_path):
    (tmp_path / "s.orig").write_text("x\ny\n", encoding="utf-8")
    for k in (2, 10, 1):
        (tmp_path / f"s.simp.{k}").write_text(f"x{k}\ny{k}\n", encoding="utf-8")
    refs = load_multi_reference(tmp_path / "s.orig", str(tmp_path / "s.simp.*"))
    assert refs.references == [["x1", "x2", "x10"], ["y1", "y2", "y10"]]
    (tmp_path / "s.simp.3").write_text("only one\n", encoding="utf-8")
    with pytest.raises(DlmError, match=r"s.simp.3 has 1 lines but the source file .* has 2"):
        load_multi_reference(tmp_path / "s.orig", [tmp_path / "s.simp.1", tmp_path / "s.simp.3"])
    with pytest.raises(DlmError, match="matches nothing"):
        load_multi_reference(tmp_path / "s.orig", str(tmp_path / "none.*"))
