"""A saved (or pushed) model folder is complete and self-describing: dlmkit loads it, every `dlm`
command takes it, and transformers' AutoTokenizer reads the tokenizer with its roles."""

import json

import pytest
import torch

from dlmkit.errors import DlmError
from dlmkit.hub.model import DlmModel
from dlmkit.hub.load import load as load_model
from dlmkit.recipes.pretrain import train


@pytest.fixture
def trained(tiny_cfg):
    cfg = tiny_cfg("run", "model.kind=mdlm", "train.steps=2", "train.eval_every=100", "train.save_every=2")
    train(cfg, progress=False)
    return load_model(cfg.out_dir)


def test_save_pretrained_from_pretrained_then_dlm_sample(trained, tmp_path, capsys):
    from transformers import AutoTokenizer

    from dlmkit.cli import main

    model, tok = trained
    folder = tmp_path / "saved"
    model.save_pretrained(str(folder))  # load_model attached the tokenizer
    for name in ("config.json", "model.safetensors", "tokenizer.json", "dlm_tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (folder / name).is_file(), name

    hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert (hf.eos_token_id, hf.pad_token_id, hf.mask_token_id, hf.sep_token_id) == (tok.eos_id, tok.pad_id, tok.mask_id, tok.sep_id)
    assert hf.bos_token_id == tok.eos_id
    text = "Python is a programming language."
    assert hf.encode(text, add_special_tokens=False) == tok.encode(text)

    again = DlmModel.from_pretrained(str(folder))
    assert again.tokenizer is not None and again.tokenizer.fingerprint == tok.fingerprint
    x = torch.randint(4, tok.vocab_size, (2, 8))
    sigma = torch.tensor([0.5, 1.5])
    assert torch.equal(again.method.denoiser(again.net)(x, sigma), model.method.denoiser(model.net)(x, sigma))
    reloaded, tok2 = load_model(folder)
    assert tok2.fingerprint == tok.fingerprint

    again.save_pretrained(str(tmp_path / "twice"))  # from_pretrained attached it too
    assert (tmp_path / "twice" / "dlm_tokenizer.json").is_file()

    capsys.readouterr()
    assert main(["sample", str(folder), "--n", "2", "--length", "8", "--steps", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(out["texts"]) == 2


def test_save_pretrained_without_a_tokenizer_is_an_error(tmp_path, trained):
    model, tok = trained
    fresh = DlmModel(model.config)
    with pytest.raises(DlmError, match="tokenizer"):
        fresh.save_pretrained(str(tmp_path / "bare"))
    assert not (tmp_path / "bare").exists()
    fresh.save_pretrained(str(tmp_path / "given"), tokenizer=tok)
    assert load_model(tmp_path / "given")[1].fingerprint == tok.fingerprint


def test_hub_id_loads_weights_and_tokenizer(trained, tmp_path, monkeypatch):
    """A pushed repository (served here from a folder, no network) comes back with its tokenizer;
    one pushed without a tokenizer still loads."""
    import huggingface_hub
    from huggingface_hub import hub_mixin
    from huggingface_hub.errors import EntryNotFoundError

    model, tok = trained
    repo = tmp_path / "repo"
    model.save_pretrained(str(repo))

    def fake_download(repo_id, filename, **_):
        path = repo / filename
        if not path.is_file():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub_mixin, "hf_hub_download", fake_download)
    again = DlmModel.from_pretrained("someone/tiny-mdlm")
    assert again.tokenizer.fingerprint == tok.fingerprint
    (repo / "tokenizer.json").unlink()
    bare = DlmModel.from_pretrained("someone/tiny-mdlm")
    assert bare.tokenizer is None and bare.kind == model.kind
