"""Small corpora and configs that train in a second or two."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlmkit.engine.config import RunConfig, load_config

TINY = [
    "model.n_layers=2",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_cond=16",
    "model.seq_len=16",
    "tokenizer.vocab_size=300",
    "train.batch_size=8",
    "train.steps=12",
    "train.warmup=2",
    "train.eval_every=4",
    "train.eval_blocks=16",
    "train.save_every=4",
    "train.log_every=1",
    "train.sample_steps=4",
]


def write_corpus(folder: Path, n_docs: int = 40) -> Path:
    """A few dozen short English documents from the standard library's help topics."""
    from pydoc_data.topics import topics

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(sorted(topics)[:n_docs]):
        (folder / f"doc{i:03d}.txt").write_text(topics[name], encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def tiny_cfg(corpus, tmp_path):
    """Factory: a tiny run config writing to ``tmp_path/name`` with extra overrides."""

    def make(name: str = "run", *extra: str) -> RunConfig:
        return load_config("tiny", [*TINY, f"data.train={corpus}", f"out_dir={tmp_path / name}", *extra])

    return make
