"""Fixtures of the seq2seq (DiffuSeq) tests, loaded by tests/conftest.py: tiny pair files and one tiny trained run
(offline settings, the token cache and ``shared_data`` come from tests/conftest.py)."""

from pathlib import Path

import pytest

from seq2seq_pairs import PAIRS, TINY, write_pairs  # tests/ is on sys.path via its conftest


@pytest.fixture(scope="session")
def tiny_args():
    return list(TINY)


@pytest.fixture(scope="session")
def pairs():
    return list(PAIRS)


@pytest.fixture(scope="session")
def pair_file(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "train.jsonl", PAIRS * 2)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, pair_file):
    """A tiny diffuseq run trained 40 steps through dlmkit.recipes.pretrain.train (shared by tests)."""
    from dlmkit.engine.config import load_config
    from dlmkit.recipes.pretrain import train

    out = tmp_path_factory.mktemp("runs") / "dq"
    cfg = load_config("diffuseq-tiny", [*TINY, f"data.train={pair_file}", f"out_dir={out}", "train.steps=40"])
    result = train(cfg, progress=False)
    return out, result


@pytest.fixture(scope="session")
def shared_seq2seq(shared_data) -> Path:
    path = shared_data / "seq2seq"
    if not path.is_dir():
        pytest.skip(f"shared seq2seq data {path} not found")
    return path
