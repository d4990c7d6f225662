"""Corpus reading, packing with separators, and the token cache."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from readme_packages import require  # README-installed: fail, never skip  # noqa: E402
from tokenizers import models, pre_tokenizers  # noqa: E402
from tokenizers import Tokenizer as HFTokenizer  # noqa: E402

from dlmkit.data.corpus import iter_documents, resolve_paths, token_dtype, tokenize_corpus  # noqa: E402
from dlmkit.data.tokenizer import Tokenizer  # noqa: E402
from dlmkit.errors import DlmError  # noqa: E402

DOCS = ["First document.\nIt has two lines.", "Second: ünïcode ✓", "Third one\n\nwith a blank line inside"]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def counting(tok):
    """Make ``tok.encode_batch`` count its calls (in ``tok.calls``)."""
    original = tok.encode_batch
    tok.calls = 0

    def encode_batch(texts):
        tok.calls += 1
        return original(texts)

    tok.encode_batch = encode_batch
    return tok


def test_resolve_paths_folders_globs_and_missing(tmp_path):
    a = write(tmp_path / "c" / "b.txt", "b")
    b = write(tmp_path / "c" / "a" / "z.txt", "z")
    write(tmp_path / "c" / ".hidden", "h")
    assert resolve_paths(tmp_path / "c") == [b, a]
    assert resolve_paths(str(tmp_path / "c" / "**" / "*.txt")) == [b, a]
    assert resolve_paths([a, str(tmp_path / "c")]) == [a, b]
    with pytest.raises(DlmError, match="missing.txt not found"):
        resolve_paths([a, tmp_path / "missing.txt"])
    with pytest.raises(DlmError, match="matches nothing"):
        resolve_paths(str(tmp_path / "*.jsonl"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DlmError, match="holds no files"):
        resolve_paths(tmp_path / "empty")


def test_doc_split_modes(tmp_path):
    f = write(tmp_path / "t.txt", "one\ntwo\n\n  \nthree\r\nfour\n")
    assert list(iter_documents(f)) == ["one\ntwo\n\n  \nthree\nfour"]
    assert list(iter_documents(f, doc_split="blank_line")) == ["one\ntwo", "three\nfour"]
    assert list(iter_documents(f, doc_split="line")) == ["one", "two", "three", "four"]
    with pytest.raises(DlmError, match="blank_line"):
        list(iter_documents(f, doc_split="paragraph"))


def test_jsonl_documents_and_errors(tmp_path):
    f = write(tmp_path / "d.jsonl", "\n".join(json.dumps({"body": d, "id": i}) for i, d in enumerate(DOCS)))
    assert list(iter_documents(f, text_field="body")) == DOCS
    with pytest.raises(DlmError, match=r"d.jsonl:1: no field 'text'"):
        list(iter_documents(f))
    bad = write(tmp_path / "bad.jsonl", '{"text": "ok"}\n\n{"text": broken\n')
    with pytest.raises(DlmError, match=r"bad.jsonl:3: bad JSON"):
        list(iter_documents(bad))
    num = write(tmp_path / "num.jsonl", '{"text": 3}\n')
    with pytest.raises(DlmError, match=r"num.jsonl:1: field 'text' is int"):
        list(iter_documents(num))


def test_empty_corpus_is_an_error(tmp_path, bpe):
    f = write(tmp_path / "empty.txt", "  \n\n")
    with pytest.raises(DlmError, match="no documents"):
        list(iter_documents(f))
    with pytest.raises(DlmError, match="no documents"):
        tokenize_corpus(f, bpe, tmp_path / "cache")


def test_non_utf8_bytes_are_replaced_with_a_warning(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\u00e9 ok".encode("latin-1"))
    with pytest.warns(UserWarning, match="latin1.txt: not valid UTF-8"):
        docs = list(iter_documents(f))
    assert docs == ["caf\ufffd ok"]


def test_saved_dataset_folder(tmp_path):
    datasets = require("datasets")
    ds = datasets.Dataset.from_dict({"text": DOCS, "n": [1, 2, 3]})
    ds.save_to_disk(str(tmp_path / "ds"))
    assert resolve_paths(tmp_path) == [tmp_path / "ds"]
    assert list(iter_documents(tmp_path / "ds")) == DOCS
    with pytest.raises(DlmError, match="no column 'body'"):
        list(iter_documents(tmp_path / "ds", text_field="body"))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DlmError, match="DatasetDict with splits"):
        list(iter_documents(tmp_path / "dd"))


def test_packing_puts_eos_between_every_document(tmp_path, bpe):
    folder = tmp_path / "docs"
    for i, doc in enumerate(DOCS):
        write(folder / f"{i}.txt", doc + "\n")
    tokens = tokenize_corpus(folder, bpe, tmp_path / "cache")
    expected = [t for doc in DOCS for t in bpe.encode(doc) + [bpe.eos_id]]
    assert tokens.tolist() == expected
    ends = np.flatnonzero(tokens == bpe.eos_id)
    assert len(ends) == len(DOCS) and ends[-1] == len(tokens) - 1
    pieces = np.split(np.asarray(tokens), ends[:-1] + 1)
    assert [bpe.decode(p) for p in pieces] == DOCS


def test_real_text_packing(tmp_path, bpe, shared_data):
    stories = shared_data / "lm" / "tinystories" / "valid_first1000.txt"
    small = write(tmp_path / "stories.txt", stories.read_text(encoding="utf-8")[:60_000])
    docs = list(iter_documents(small, doc_split="blank_line"))
    tokens = tokenize_corpus(small, bpe, tmp_path / "cache", doc_split="blank_line")
    ends = np.flatnonzero(tokens == bpe.eos_id)
    assert len(ends) == len(docs) > 10
    starts = np.concatenate([[0], ends[:-1] + 1])
    assert [bpe.decode(tokens[s:e]) for s, e in zip(starts, ends)] == docs


def test_cache_hit_skips_tokenising_and_key_tracks_inputs(tmp_path, bpe, english):
    f = write(tmp_path / "a.txt", "\n\n".join(english[:3]))
    cache = tmp_path / "cache"
    tok = counting(Tokenizer.load(_saved(bpe, tmp_path / "tok")))
    first = tokenize_corpus(f, tok, cache, doc_split="blank_line")
    assert tok.calls >= 1 and first.dtype == np.uint16
    tok.calls = 0
    second = tokenize_corpus(f, tok, cache, doc_split="blank_line")
    assert tok.calls == 0 and isinstance(second, np.memmap) and np.array_equal(first, second)
    assert len(list(cache.glob("tokens-*.npy"))) == 1
    assert json.loads(next(cache.glob("tokens-*.json")).read_text())["tokens"] == len(first)
    tokenize_corpus(f, tok, cache, doc_split="line")  # another option: another key
    assert tok.calls >= 1 and len(list(cache.glob("tokens-*.npy"))) == 2
    # same size and mtime but other content: still a new key (small files are hashed)
    st = f.stat()
    f.write_text(f.read_text().replace("a", "b"), encoding="utf-8")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    tok.calls = 0
    third = tokenize_corpus(f, tok, cache, doc_split="blank_line")
    assert tok.calls >= 1 and not np.array_equal(first, third)
    other = counting(Tokenizer.load(_saved(bpe, tmp_path / "tok")))
    other.calls = 0
    tokenize_corpus(f, other, cache, doc_split="blank_line")
    assert other.calls == 0  # same tokenizer from disk: same key
    assert len(list(cache.glob("tokens-*.npy"))) == 3


def test_other_tokenizer_other_key(tmp_path, bpe, english):
    from dlmkit.data.tokenizer import train_bpe

    f = write(tmp_path / "a.txt", english[0])
    a = tokenize_corpus(f, bpe, tmp_path / "cache")
    b = tokenize_corpus(f, train_bpe(english, 300), tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("tokens-*.npy"))) == 2 and len(b) > len(a)


def test_dtype_follows_vocab_size(tmp_path):
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
    words = {f"w{i}": i for i in range(70_000)}
    hf = HFTokenizer(models.WordLevel(words, unk_token="w0"))
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = Tokenizer(hf, {"eos": "w1", "pad": "w2", "mask": "w3", "sep": "w1"})
    f = write(tmp_path / "w.txt", "w69999 w5 w70000")
    tokens = tokenize_corpus(f, tok, tmp_path / "cache")
    assert tokens.dtype == np.uint32 and tokens.tolist() == [69999, 5, 0, 1]


def _saved(tok, folder):
    tok.save(folder)
    return folder
