"""The validation set is fixed by a block count (``train.eval_blocks``), spread over the whole
validation text: curves of runs with different batch sizes are on the same blocks and noise."""

from __future__ import annotations

import pytest

from dlmkit.recipes.pretrain import Trainer


def _seen_blocks(trainer: Trainer) -> tuple[float, list[int]]:
    """The validation loss, and the first token of every block the evaluation scored."""
    seen: list[int] = []
    loss = trainer.method.loss

    def spy(net, x, generator):
        seen.extend(x[:, 0].tolist())
        return loss(net, x, generator)

    trainer.method.loss = spy
    return trainer.evaluate(), seen


@pytest.mark.parametrize("kind", ["mdlm", "ar"])
def test_validation_loss_does_not_depend_on_batch_size(tiny_cfg, kind, one_thread):
    results = []
    for batch, micro in [(4, 0), (12, 0), (12, 3)]:
        cfg = tiny_cfg(f"b{batch}m{micro}", f"model.kind={kind}", f"train.batch_size={batch}",
                       f"train.micro_batch={micro}", "train.eval_blocks=20", "seed=3")
        trainer = Trainer(cfg, progress=False)
        results.append(_seen_blocks(trainer))
        trainer.close()
    assert len(results[0][1]) == 20
    assert all(r == results[0] for r in results[1:])  # same blocks, same noise, same loss


def test_validation_blocks_span_every_valid_file(tiny_cfg, tmp_path, corpus, one_thread):
    """A ``data.valid`` folder of two files: the evaluated blocks come from both, not the first only."""
    valid = tmp_path / "valid"
    valid.mkdir()
    (valid / "a.txt").write_text("a" * 4000, encoding="utf-8")
    (valid / "b.txt").write_text("z" * 4000, encoding="utf-8")
    cfg = tiny_cfg("run", "model.kind=mdlm", f"data.valid={valid}", "train.eval_blocks=8")
    trainer = Trainer(cfg, progress=False)
    _, firsts = _seen_blocks(trainer)
    trainer.close()
    tok = trainer.tokenizer
    assert len(firsts) == 8
    texts = {tok.decode([t]) for t in firsts}
    assert any("a" in t for t in texts) and any("z" in t for t in texts)
