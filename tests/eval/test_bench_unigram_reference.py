"""benchmarks/discrete_lm.py's context-free reference is scored on exactly the blocks it is compared
with: the training loop's validation blocks, and the blocks ``dlm eval ppl`` scores."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dlmkit.data.tokenizer import Tokenizer
from dlmkit.eval.tasks.perplexity import evaluate_model_on
from dlmkit.methods.ar import AutoRegressive
from dlmkit.recipes.pretrain import Trainer, train

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from discrete_lm import unigram_on_blocks, unigram_on_valid_blocks  # noqa: E402


@pytest.fixture
def valid_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "valid"
    folder.mkdir()
    (folder / "a.txt").write_text("the cat sat on the mat. " * 60, encoding="utf-8")
    (folder / "b.txt").write_text("zebras quietly graze at dawn. " * 60, encoding="utf-8")
    return folder


def test_reference_is_on_the_engine_validation_blocks(tiny_cfg, valid_folder, one_thread):
    cfg = tiny_cfg("run", "model.kind=ar", f"data.valid={valid_folder}", "train.eval_blocks=10")
    trainer = Trainer(cfg, progress=False)
    seen = []
    loss = trainer.method.loss
    trainer.method.loss = lambda net, x, g: (seen.append(x), loss(net, x, g))[1]
    trainer.evaluate()
    trainer.close()
    logp = np.log(np.random.default_rng(0).dirichlet(np.ones(trainer.tokenizer.vocab_size)))
    blocks = np.concatenate([x.numpy() for x in seen])
    assert len(blocks) == 10
    assert unigram_on_valid_blocks(cfg, logp, trainer.tokenizer) == pytest.approx(-logp[blocks].mean(), rel=1e-12)


def test_reference_is_on_the_blocks_eval_ppl_scores(tiny_cfg, valid_folder, one_thread, monkeypatch):
    cfg = tiny_cfg("run", "model.kind=ar", "train.steps=1", "train.save_every=1", "train.eval_every=0")
    train(cfg, progress=False)
    seen = []
    nll = AutoRegressive.nll
    monkeypatch.setattr(AutoRegressive, "nll", lambda self, net, x, **kw: (seen.append(x), nll(self, net, x, **kw))[1])
    evaluate_model_on(cfg.out_dir, str(valid_folder), batch_size=4, max_sequences=6, progress=False)
    tokenizer = Tokenizer.load(Path(cfg.out_dir) / "tokenizer")
    logp = np.log(np.random.default_rng(1).dirichlet(np.ones(tokenizer.vocab_size)))
    blocks = np.concatenate([x.cpu().numpy() for x in seen])
    assert len(blocks) == 6
    assert unigram_on_blocks(str(valid_folder), logp, tokenizer, cfg.model.seq_len, 6) == pytest.approx(-logp[blocks].mean(), rel=1e-12)
