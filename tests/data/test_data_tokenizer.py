"""Tokenizers: round trips, special-token ids, fingerprints, errors."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from tokenizers import models, pre_tokenizers  # noqa: E402
from tokenizers import Tokenizer as HFTokenizer  # noqa: E402

from dlmkit.data.tokenizer import Tokenizer, TokenizerConfig, build_tokenizer, train_bpe  # noqa: E402
from dlmkit.errors import DlmError  # noqa: E402

TRICKY = [
    "Hello world",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew\n\nlines\r\n",
    "naïve café, Straße, Ελληνικά, русский, 日本語, 한국어, emoji 🙂👍🏽",
    "literal specials: <|endoftext|> <|mask|> <|pad|> [MASK]",
    "\x00\x07 control bytes \u200b zero-width",
    "",
]


def real_text(shared_data, n=20_000):
    return (shared_data / "lm" / "austen" / "emma.txt").read_text(encoding="utf-8")[:n]


def test_bpe_round_trip_and_specials(bpe):
    assert (bpe.eos_id, bpe.pad_id, bpe.mask_id, bpe.sep_id) == (0, 1, 2, 3)
    assert bpe.vocab_size == 512
    for text in TRICKY:
        ids = bpe.encode(text)
        assert bpe.decode(ids) == text
        assert not {bpe.eos_id, bpe.pad_id, bpe.mask_id, bpe.sep_id} & set(ids)  # text never yields specials
    assert bpe.encode_batch(TRICKY) == [bpe.encode(t) for t in TRICKY]
    assert bpe.decode_batch([bpe.encode(t) for t in TRICKY]) == TRICKY


def test_decode_skips_specials_unless_asked(bpe):
    ids = [bpe.eos_id, *bpe.encode("a cat"), bpe.mask_id]
    assert bpe.decode(ids) == "a cat"
    assert bpe.decode(ids, skip_special=False) == "<|endoftext|>a cat<|mask|>"
    assert bpe.decode(np.array(ids, dtype=np.uint16)) == "a cat"
    assert bpe.decode_batch(torch.tensor([ids, ids])) == ["a cat", "a cat"]


def test_bpe_training_is_deterministic(bpe, english):
    assert train_bpe(english, 512).fingerprint == bpe.fingerprint
    assert train_bpe(english, 400).fingerprint != bpe.fingerprint


def test_gpt2_known_ids_and_specials(gpt2, shared_data):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(" the") == [262]
    assert (gpt2.eos_id, gpt2.pad_id, gpt2.sep_id, gpt2.mask_id) == (50256, 50256, 50256, 50257)
    assert gpt2.vocab_size == 50258
    assert gpt2.decode([50256, 15496, 50257], skip_special=False) == "<|endoftext|>Hello<|mask|>"
    for text in TRICKY + [real_text(shared_data)]:
        assert gpt2.decode(gpt2.encode(text)) == text


def test_wordpiece_specials_and_normalised_round_trip(bert, shared_data):
    # BERT: [SEP] ends documents and separates source/target; its own [PAD] and [MASK].
    assert (bert.eos_id, bert.sep_id, bert.pad_id, bert.mask_id) == (102, 102, 0, 103)
    assert bert.vocab_size == 30522
    assert bert.decode(bert.encode("The Quick  brown\tFox jumps over the lazy dog.")) == \
        "the quick brown fox jumps over the lazy dog."
    ids = bert.encode(real_text(shared_data, 5000))
    assert bert.encode(bert.decode(ids)) == ids  # decoding is exact up to normalisation
    assert bert.encode("[MASK]") != [bert.mask_id]


def test_fingerprint_stable_across_save_load_and_distinct(bpe, gpt2, bert, tmp_path):
    prints = set()
    for name, tok in [("bpe", bpe), ("gpt2", gpt2), ("bert", bert)]:
        tok.save(tmp_path / name)
        loaded = Tokenizer.load(tmp_path / name)
        assert loaded.fingerprint == tok.fingerprint
        assert (loaded.vocab_size, loaded.eos_id, loaded.pad_id, loaded.mask_id, loaded.sep_id) == \
            (tok.vocab_size, tok.eos_id, tok.pad_id, tok.mask_id, tok.sep_id)
        assert loaded.encode("Some text, ünïcode.") == tok.encode("Some text, ünïcode.")
        # kind "hf" on a saved folder keeps the recorded specials
        assert build_tokenizer(TokenizerConfig("hf", str(tmp_path / name))).fingerprint == tok.fingerprint
        prints.add(tok.fingerprint)
    assert len(prints) == 3


def test_hf_folder_without_declared_specials_gets_missing_ones_added(tmp_path):
    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tok = HFTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    t = build_tokenizer(TokenizerConfig("hf", str(tmp_path)))
    assert (t.eos_id, t.pad_id, t.sep_id, t.mask_id, t.vocab_size) == (3, 3, 3, 4, 5)
    assert t.encode("hello world") == [1, 2]


def test_errors_name_the_problem(tmp_path, bpe):
    with pytest.raises(DlmError, match="bpe, gpt2, hf"):
        build_tokenizer(TokenizerConfig(kind="sentencepiece"))
    with pytest.raises(DlmError, match=str(tmp_path / "nope")):
        build_tokenizer(TokenizerConfig(kind="hf", path=str(tmp_path / "nope")))
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "encoder.json").write_text("{}")
    with pytest.raises(DlmError, match="vocab.bpe"):
        build_tokenizer(TokenizerConfig(kind="gpt2", path=str(tmp_path / "g")))
    with pytest.raises(DlmError, match="tokenizer.json"):
        build_tokenizer(TokenizerConfig(kind="hf", path=str(tmp_path / "g")))
    with pytest.raises(DlmError, match="needs tokenizer.path"):
        build_tokenizer(TokenizerConfig(kind="gpt2"))
    with pytest.raises(DlmError, match="no corpus"):
        build_tokenizer(TokenizerConfig(kind="bpe"))
    with pytest.raises(DlmError, match="too small"):
        build_tokenizer(TokenizerConfig(kind="bpe", vocab_size=100), ["text"])
    bpe._tok.save(str(tmp_path / "g" / "tokenizer.json"))
    with pytest.raises(DlmError, match="dlm_tokenizer.json"):
        Tokenizer.load(tmp_path / "g")
