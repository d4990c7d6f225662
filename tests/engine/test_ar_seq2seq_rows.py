"""data.format=seq2seq: the AR baseline trained by the library's train() on the DiffuSeq rows
(what benchmarks/diffuseq_bench.py does instead of its own loop)."""

import json

import pytest

from dlmkit.engine.config import load_config
from dlmkit.recipes.pretrain import train
from dlmkit.errors import DlmError
from dlmkit.hub.load import load as load_model
from seq2seq_pairs import TINY


def test_ar_trains_on_seq2seq_rows(tmp_path, pair_file):
    out = tmp_path / "ar"
    cfg = load_config("diffuseq-tiny", [*TINY, "model.kind=ar", "data.format=seq2seq", f"data.train={pair_file}",
                                        f"out_dir={out}", "train.steps=3", "data.valid_fraction=0"])
    res = train(cfg, progress=False)
    assert res.final_loss > 0
    data = json.loads((out / "seq2seq_data.json").read_text())  # the pairs were framed as [src sep trg] rows
    assert data["n_train_rows"] == 24 and data["train"]["n_pairs"] == 24
    model, _ = load_model(out)
    assert model.kind == "ar"


def test_unknown_data_format_is_refused():
    with pytest.raises(DlmError, match="data.format"):
        load_config("diffuseq-tiny", ["data.format=rows"])
