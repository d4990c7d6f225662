"""Tiny trained models and a tiny GPT-2 judge, shared by the evaluation-suite tests (seconds to build)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dlmkit.engine.config import load_config

TINY = [
    "model.n_layers=2",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_cond=16",
    "model.seq_len=32",
    "tokenizer.vocab_size=300",
    "train.batch_size=8",
    "train.warmup=2",
    "train.eval_every=1000",
    "train.eval_blocks=8",
    "train.save_every=1000",
    "train.log_every=1000",
    "train.sample_steps=4",
]
SKY = "the colour of the sky is blue. "


def train_tiny(out: Path, data: Path, kind: str, steps: int, *extra: str) -> Path:
    from dlmkit.recipes.pretrain import train

    train(load_config("tiny", [*TINY, f"model.kind={kind}", f"data.train={data}", f"out_dir={out}", f"train.steps={steps}", *extra]), progress=False)
    return out


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory) -> Path:
    from pydoc_data.topics import topics

    folder = tmp_path_factory.mktemp("evcorpus")
    for i, name in enumerate(sorted(topics)[:30]):
        (folder / f"doc{i:03d}.txt").write_text(topics[name], encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def ar_run(text_corpus, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("ev") / "ar", text_corpus, "ar", 20)


@pytest.fixture(scope="session")
def diffusion_kinds() -> list[str]:
    from dlmkit.methods.base import METHODS, get_method_class

    get_method_class("ar")  # registers the built-in kinds
    return [k for k in ("mdlm", "sedd_absorb", "sedd_uniform") if k in METHODS]


@pytest.fixture(scope="session")
def diffusion_runs(text_corpus, tmp_path_factory, diffusion_kinds) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("evdiff")
    return {k: train_tiny(base / k, text_corpus, k, 10) for k in diffusion_kinds}


@pytest.fixture(scope="session")
def gpt2_judge(ar_run, tmp_path_factory) -> Path:
    """A random 2-layer GPT-2 with the tiny run's tokenizer, saved as an HF folder."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from dlmkit.hub.checkpoint import resolve_model_folder

    folder = tmp_path_factory.mktemp("judge") / "gpt2-tiny"
    tok = PreTrainedTokenizerFast(tokenizer_file=str(resolve_model_folder(ar_run) / "tokenizer.json"),
                                  eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|pad|>")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_layer=2, n_embd=32, n_head=2, n_positions=48,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def sky_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sky") / "sky.txt"
    path.write_text(SKY * 400, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def sky_ar(sky_corpus, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("skyar") / "run", sky_corpus, "ar", 150, "train.lr=3e-3", "model.seq_len=16")


@pytest.fixture(scope="session")
def webtext(shared_data) -> Path:
    path = Path(os.environ.get("DLM_SHARED_DATA", shared_data)) / "prompts" / "webtext.valid.prefixes.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def sky_mdlm(sky_corpus, tmp_path_factory, diffusion_kinds):
    if "mdlm" not in diffusion_kinds:
        pytest.skip("mdlm is not registered")
    return train_tiny(tmp_path_factory.mktemp("skymdlm") / "run", sky_corpus, "mdlm", 200, "train.lr=3e-3", "model.seq_len=16")
