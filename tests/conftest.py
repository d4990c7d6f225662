"""Test-wide settings: no network look-ups, a private token cache, the shared data folder."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

# fixtures shared across the layer folders: tiny runs and corpora, the eval suite's trained models,
# DiffuSeq pairs (tests/recipes/conftest.py keeps DLM-One's smaller pair_file)
pytest_plugins = ["fixtures_runs", "fixtures_eval_runs", "fixtures_seq2seq"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tokenised corpora go to a temporary folder, not the user's ~/.cache."""
    os.environ["DLM_CACHE"] = str(tmp_path_factory.mktemp("dlm_cache"))


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """`dlm` commands run in-process set torch's thread count (`--threads`); restore it after each test."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread(monkeypatch):
    """Killed runs' subprocesses run on one thread; so must the in-process runs they are compared
    with, or float reductions differ in the last bits (`dlm` commands set threads from OMP_NUM_THREADS)."""
    import torch

    torch.set_num_threads(1)  # restored by _keep_thread_count
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(os.environ.get("DLM_SHARED_DATA", REPO / ".." / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found (set DLM_SHARED_DATA)")
    return path
