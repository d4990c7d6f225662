"""Released SEDD / MDLM layouts -> dlmkit: same function as the published architecture, round trips."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout

import pytest
import torch

from released_helpers import V, ddit_state, mdlm_hub_config, reference_ddit, sedd_hub_config, write_release

from dlmkit.errors import DlmError


def _ids(batch=2, length=24, seed=0, mask_frac=0.4):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V - 1, (batch, length), generator=g)
    masked = torch.rand(batch, length, generator=g) < mask_frac
    return ids.masked_fill(masked, V - 1)


def test_sedd_log_scores_equal_reference(sedd_release):
    from dlmkit.hub.load import load as load_model

    model, tok = load_model(sedd_release)
    assert model.kind == "sedd_absorb" and tok.vocab_size == V and tok.mask_id == V - 1
    assert model.config["options"]["schedule"] == "loglinear" and model.config["options"]["eps"] == 1e-3
    from safetensors.torch import load_file

    state = load_file(str(sedd_release / "model.safetensors"))
    x = _ids()
    for sig in (0.05, 0.3, 0.7, 3.0):  # both branches of SEDD's expm1 / exp - 1
        sigma = torch.full((x.shape[0],), sig)
        sigma[1] = sig * 1.7
        want = reference_ddit(state, "", x, sigma, n_heads=2, scale_by_sigma=True)
        got = model.method.score_fn(model.net)(x, sigma)
        assert got.shape == want.shape == (2, 24, V)
        torch.testing.assert_close(got.double(), want, atol=2e-4, rtol=1e-4)
        assert (got.gather(-1, x[..., None]) == 0).all()


def test_mdlm_logits_and_subs_equal_reference(mdlm_release):
    from dlmkit.hub.load import load as load_model

    model, tok = load_model(mdlm_release)
    assert model.kind == "mdlm" and model.config["backbone"]["fixed_cond"] == 0.0
    from safetensors.torch import load_file

    state = load_file(str(mdlm_release / "model.safetensors"))
    x = _ids(seed=1)
    sigma = torch.tensor([0.4, 2.0])
    # MDLM with time_conditioning=False zeroes sigma before the backbone
    raw = reference_ddit(state, "backbone.", x, torch.zeros(2), n_heads=2, scale_by_sigma=False, scatter=False)
    torch.testing.assert_close(model.net(x).double(), raw, atol=2e-4, rtol=1e-4)
    # SUBS: no mass on the mask; unmasked tokens carried over
    logits = raw.clone()
    logits[..., V - 1] = -math.inf
    want = torch.log_softmax(logits, -1)
    keep = x != V - 1
    want[keep] = -math.inf
    want[keep, x[keep]] = 0.0
    got = model.method.denoiser(model.net)(x, sigma).double()
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    fin = torch.isfinite(want)
    torch.testing.assert_close(got[fin], want[fin], atol=2e-4, rtol=1e-4)


def test_mdlm_time_conditioned_variant(tmp_path, gpt2_files):
    from dlmkit.hub.load import load as load_model

    folder = write_release(tmp_path / "mdlm-timed", mdlm_hub_config(time_conditioning=True), ddit_state("backbone.", 3))
    model, _ = load_model(folder)
    assert model.kind == "mdlm_sigma" and model.config["backbone"]["fixed_cond"] is None
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    x = _ids(seed=2)
    sigma = torch.tensor([0.1, 1.5])
    raw = reference_ddit(state, "backbone.", x, sigma, n_heads=2, scale_by_sigma=False, scatter=False)
    got = model.method.denoiser(model.net)(x, sigma).double()
    want = torch.log_softmax(raw.masked_fill(torch.arange(V) == V - 1, -math.inf), -1)
    m = x == V - 1
    torch.testing.assert_close(got[m], want[m], atol=2e-4, rtol=1e-4)


def test_bin_weights_load_with_weights_only(tmp_path, gpt2_files):
    from dlmkit.hub.load import load as load_model

    state = ddit_state("", 1)
    folder = write_release(tmp_path / "sedd-bin", sedd_hub_config(), state, bin_file=True)
    model, _ = load_model(folder)
    x = _ids()
    sigma = torch.tensor([0.2, 1.0])
    torch.testing.assert_close(model.method.score_fn(model.net)(x, sigma).double(),
                               reference_ddit(state, "", x, sigma, n_heads=2, scale_by_sigma=True), atol=2e-4, rtol=1e-4)
    # a pickle that is more than tensors is refused, never executed
    bad = tmp_path / "sedd-evil"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(sedd_hub_config()))
    torch.save({"x": torch.zeros(1), "f": io.StringIO}, bad / "pytorch_model.bin")
    with pytest.raises(DlmError, match="not a plain tensor state dict"):
        load_model(bad)


def test_convert_cli_and_round_trips(sedd_release, mdlm_release, tmp_path):
    from dlmkit.cli import main
    from dlmkit.hub.model import DlmModel
    from dlmkit.hub.load import load as load_model

    x = _ids(seed=3)
    sigma = torch.tensor([0.3, 0.9])
    for src, name in ((sedd_release, "sedd"), (mdlm_release, "mdlm")):
        dst = tmp_path / f"{name}-dlm"
        buf = io.StringIO()
        with redirect_stdout(buf):
            assert main(["convert", str(src), str(dst), "--json"]) == 0
        info = json.loads(buf.getvalue().strip().splitlines()[-1])
        assert info["layout"] == name and (dst / "model.safetensors").is_file() and (dst / "tokenizer.json").is_file()
        direct, _ = load_model(src)
        converted, tok = load_model(dst)
        assert tok.vocab_size == V
        again = DlmModel.from_pretrained(str(dst))
        saved = tmp_path / f"{name}-saved"
        again.save_pretrained(str(saved))
        reloaded = DlmModel.from_pretrained(str(saved))
        outs = []
        for m in (direct, converted, again, reloaded):
            fn = m.method.score_fn(m.net) if name == "sedd" else m.method.denoiser(m.net)
            outs.append(fn(x, sigma))
        for o in outs[1:]:
            assert torch.equal(o, outs[0])


def test_unknown_layout_is_one_line_error(tmp_path, capsys):
    from dlmkit.cli import main
    from dlmkit.hub.load import load as load_model

    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "some_vision_thing", "hidden": 3}))
    with pytest.raises(DlmError, match="unknown checkpoint layout"):
        load_model(folder)
    assert main(["convert", str(folder), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "unknown checkpoint layout" in err and "\n" not in err
    # SEDD weights that do not match the config
    bad = write_release(tmp_path / "sedd-bad", {**sedd_hub_config(), "model": {**sedd_hub_config()["model"], "n_blocks": 3}}, ddit_state("", 1))
    with pytest.raises(DlmError, match="do not match"):
        load_model(bad)
