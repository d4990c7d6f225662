"""Fixtures for the DLM-One tests: a tiny DiffuSeq teacher trained for a few steps."""

from pathlib import Path

import pytest

from seq2seq_pairs import PAIRS, TINY, write_pairs  # tests/ is on sys.path via its conftest


@pytest.fixture(scope="session")
def pair_file(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "train.jsonl", PAIRS[:10] * 2)


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory, pair_file) -> Path:
    """A tiny diffuseq teacher trained 10 steps (seconds on a CPU)."""
    from dlmkit.engine.config import load_config
    from dlmkit.recipes.pretrain import train

    out = tmp_path_factory.mktemp("runs") / "teacher"
    cfg = load_config("diffuseq-tiny", [*TINY, f"data.train={pair_file}", f"out_dir={out}", "train.steps=10"])
    train(cfg, progress=False)
    return out
