"""Checkpoints in the released layouts (SEDD hub folder, HF MDLM, HF GPT-2) with random weights.

Small shapes (2 blocks, width 32) but the real key names, config fields and GPT-2 vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from released_helpers import LEN, V, ddit_state, mdlm_hub_config, sedd_hub_config, write_release  # noqa: F401


@pytest.fixture(scope="session")
def gpt2_files(shared_data) -> Path:
    folder = shared_data / "tokenizers" / "gpt2"
    if not (folder / "encoder.json").is_file():
        pytest.skip("GPT-2 tokenizer files not in the shared data folder")
    return folder


@pytest.fixture(autouse=True)
def _shared_env(shared_data, monkeypatch):
    monkeypatch.setenv("DLM_SHARED_DATA", str(shared_data))


@pytest.fixture(scope="session")
def sedd_release(tmp_path_factory, gpt2_files) -> Path:
    return write_release(tmp_path_factory.mktemp("rel") / "sedd-small", sedd_hub_config(), ddit_state("", 1))


@pytest.fixture(scope="session")
def mdlm_release(tmp_path_factory, gpt2_files) -> Path:
    return write_release(tmp_path_factory.mktemp("rel") / "mdlm-owt", mdlm_hub_config(), ddit_state("backbone.", 2))


@pytest.fixture(scope="session")
def gpt2_hf(tmp_path_factory, gpt2_files) -> Path:
    """A random 2-layer GPT-2 (full GPT-2 vocabulary) saved with a tokenizer made from the shared GPT-2 files."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("hf") / "gpt2-tiny"
    bpe = Tokenizer(models.BPE.from_file(str(gpt2_files / "encoder.json"), str(gpt2_files / "vocab.bpe")))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V - 1, n_layer=2, n_embd=32, n_head=2, n_positions=LEN, bos_token_id=50256, eos_token_id=50256)
    GPT2LMHeadModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder
