"""Row framing, truncation counting and the seq2seq data preparation of the training loop."""

import numpy as np
import pytest
import torch

from dlmkit.data.seq2seq_blocks import build_blocks, frame_rows, prepare_seq2seq, source_cap, target_mask
from dlmkit.errors import DlmError

SEP, EOS, PAD = 1, 2, 0


def test_frame_rows_layout_and_counts():
    rows, st = frame_rows([[5, 6, 7], [5] * 20], [[8, 9], [9] * 30], seq_len=12, sep=SEP, eos=EOS, pad=PAD)
    assert rows.shape == (2, 12)
    assert rows[0].tolist() == [5, 6, 7, SEP, 8, 9, EOS, PAD, PAD, PAD, PAD, PAD]
    # source cap (12-2)//2 = 5, target gets 12-2-5 = 5
    assert rows[1].tolist() == [5] * 5 + [SEP] + [9] * 5 + [EOS]
    assert (st.n_src_truncated, st.src_tokens_cut, st.n_trg_truncated, st.trg_tokens_cut) == (1, 15, 1, 25)
    assert "1 sources truncated" in st.summary()


def test_frame_rows_caps_and_sampling_rows():
    rows, st = frame_rows([[5, 6, 7, 8]], None, seq_len=10, sep=SEP, eos=EOS, pad=PAD, max_src_len=2)
    assert rows[0].tolist() == [5, 6, SEP] + [PAD] * 7 and st.n_src_truncated == 1
    rows, st = frame_rows([[5]], [[7, 7, 7, 7]], seq_len=10, sep=SEP, eos=EOS, pad=PAD, max_trg_len=2)
    assert rows[0].tolist() == [5, SEP, 7, 7, EOS] + [PAD] * 5 and st.n_trg_truncated == 1
    with pytest.raises(DlmError, match="no room"):
        source_cap(10, 8)


def test_target_mask_after_first_sep():
    rows = torch.tensor([[5, SEP, 7, SEP, PAD], [SEP, 7, 7, EOS, PAD], [5, 5, 5, 5, 5]])
    m = target_mask(rows, SEP)
    assert m.tolist() == [[False, False, True, True, True], [False, True, True, True, True], [True] * 5]


def test_prepare_seq2seq_holds_out_and_reports(tmp_path, pair_file, pairs, capsys):
    from dlmkit.engine.config import load_config
    from dlmkit.data.tokenizer import train_bpe

    tok = train_bpe([s + " " + t for s, t in pairs], 300)
    cfg = load_config("diffuseq-tiny", ["model.seq_len=16", f"data.train={pair_file}", "data.valid_fraction=0.25", f"out_dir={tmp_path}"])
    train, valid, order = prepare_seq2seq(cfg, tok)
    assert valid is train and len(order) == 6 and not set(order) & set(train.train)
    x = train.batch(train.train[:3])
    assert x.dtype == torch.long and x.shape == (3, 16)
    assert (x == tok.sep_id).any(1).all()
    err = capsys.readouterr().err
    assert "truncated" in err and (tmp_path / "seq2seq_data.json").is_file()
    cfg.data.valid = str(pair_file)
    train, valid, order = prepare_seq2seq(cfg, tok, report=False)
    assert valid is not train and len(order) == len(valid) == 24 and len(train.train) == 24


def test_missing_and_empty_files(tmp_path):
    from dlmkit.engine.config import load_config

    cfg = load_config("diffuseq-tiny", [f"data.train={tmp_path / 'nope.jsonl'}"])
    with pytest.raises(DlmError, match="not found"):
        prepare_seq2seq(cfg, None)
    (tmp_path / "empty.jsonl").write_text("")
    cfg.data.train = str(tmp_path / "empty.jsonl")
    with pytest.raises(DlmError):
        prepare_seq2seq(cfg, None)


def test_shared_multi_reference_sets(shared_seq2seq):
    """ASSET test: one source file + 10 references; TurkCorpus tsv pairs frame too."""
    from dlmkit.data.seq2seq import load_multi_reference, load_pairs
    from dlmkit.data.tokenizer import train_bpe

    mr = load_multi_reference(shared_seq2seq / "asset" / "asset.test.orig", str(shared_seq2seq / "asset" / "asset.test.simp.*"))
    assert len(mr.sources) == 359 and all(len(r) == 10 for r in mr.references)
    pairs = load_pairs(shared_seq2seq / "turkcorpus" / "valid.tsv")[:50]
    tok = train_bpe([s for s, _ in pairs], 400)
    blocks = build_blocks(pairs, tok, seq_len=32)
    assert len(blocks) == 50 and blocks.stats.n_pairs == 50
    assert blocks.stats.n_src_truncated > 0  # Wikipedia sentences are long: cuts are counted
    assert np.all(blocks.rows[:, 0] != tok.pad_id)
