"""Released SEDD / MDLM folders as the starting point of a run: `dlm train --init-from`, the
student of `dlm distill tcs` (taught by a Hugging Face GPT-2 folder) and the teacher of
`dlm distill sdtt`."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

from dlmkit.cli import main
from dlmkit.engine.config import load_config
from dlmkit.hub.released import load_released
from dlmkit.hub.load import load as load_model

SMALL_RUN = ["train.batch_size=2", "train.warmup=1", "train.eval_every=1000", "train.eval_blocks=2", "train.save_every=1000",
             "train.log_every=1000", "train.sample_steps=2"]


def _run(argv: list[str]) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(argv)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return rc, (json.loads(lines[-1]) if rc == 0 and lines else None), err.getvalue()


@pytest.fixture(scope="module")
def text(tmp_path_factory, shared_data) -> Path:
    src = shared_data / "lm" / "ptb" / "ptb.test.txt"
    if not src.is_file():
        pytest.skip("PTB test file not in the shared data folder")
    path = tmp_path_factory.mktemp("text") / "ptb_head.txt"
    path.write_text(src.read_text(encoding="utf-8")[:20000], encoding="utf-8")
    return path


def _same_function(a: torch.nn.Module, b: torch.nn.Module, seq_len: int, mask_id: int, cond: bool) -> None:
    x = torch.randint(0, mask_id, (2, seq_len), generator=torch.Generator().manual_seed(0))
    x[:, ::3] = mask_id
    sigma = torch.full((2,), 0.7) if cond else None
    with torch.no_grad():
        torch.testing.assert_close(a(x, cond=sigma), b(x, cond=sigma))


def test_sedd_release_as_tcs_student(sedd_release, gpt2_hf, text, tmp_path):
    out = tmp_path / "tcs_sedd"
    rc, res, err = _run(["distill", "tcs", "--teacher", str(gpt2_hf), "--student", str(sedd_release), "--data", str(text),
                         "--out", str(out), "--estimator", "left", "--json", "--no-progress", *SMALL_RUN, "train.steps=1", "train.lr=0"])
    assert rc == 0, err
    assert res["kind"] == "sedd_absorb" and res["steps"] == 1
    cfg = load_config(str(out / "config.yaml"))
    assert cfg.model.init_from == str(sedd_release) and cfg.model.seq_len == 64 and cfg.model.kind == "sedd_absorb"
    # learning rate 0: the trained student is the converted release, weights and function
    student, tok = load_model(out)
    release, release_tok = load_released(sedd_release)
    assert tok.fingerprint == release_tok.fingerprint
    _same_function(student.net, release.net, 64, tok.mask_id, cond=True)

    rc, res, err = _run(["distill", "tcs", "--resume", str(out), "train.steps=2", "--json", "--no-progress"])
    assert rc == 0, err
    assert res["steps"] == 2


def test_train_init_from_mdlm_release(mdlm_release, text, tmp_path):
    out = tmp_path / "mdlm_ft"
    rc, res, err = _run(["train", "tiny", f"data.train={text}", f"out_dir={out}", *SMALL_RUN, "train.steps=1", "train.lr=0",
                         "--init-from", str(mdlm_release), "--json", "--no-progress"])
    assert rc == 0, err
    cfg = load_config(str(out / "config.yaml"))
    assert cfg.model.kind == "mdlm" and cfg.model.d_model == 32 and cfg.model.init_from == str(mdlm_release)
    tuned, tok = load_model(out)
    release, _ = load_released(mdlm_release)
    assert tuned.config["backbone"]["fixed_cond"] == 0.0 and tok.vocab_size == 50258
    _same_function(tuned.net, release.net, 64, tok.mask_id, cond=False)


def test_mdlm_release_as_sdtt_teacher(mdlm_release, text, tmp_path):
    """The released MDLM folder teaches two SDTT rounds (4 -> 2 -> 1 steps); at learning rate 0 each
    round's student is the release, function for function, and samples at its recorded steps."""
    out = tmp_path / "sdtt_owt"
    rc, res, err = _run(["distill", "sdtt", str(mdlm_release), "--data", str(text), "--out", str(out), "--rounds", "2",
                         "--start-steps", "4", "--round-steps", "1", "--json", "--no-progress", *SMALL_RUN, "train.lr=0"])
    assert rc == 0, err
    assert res["kind"] == "mdlm" and res["recommended_steps"] == 1 and [r["student_steps"] for r in res["rounds"]] == [2, 1]
    release, _ = load_released(mdlm_release)
    for r in res["rounds"]:
        student, tok = load_model(r["student"])
        assert student.config["recommended_steps"] == r["student_steps"]
        _same_function(student.net, release.net, 64, tok.mask_id, cond=False)
    rc, res, err = _run(["sample", res["student"], "--n", "2", "--json"])
    assert rc == 0, err
    assert res["steps"] == 1 and len(res["texts"]) == 2


def test_hf_causal_cannot_start_a_run(gpt2_hf, text, tmp_path):
    rc, _, err = _run(["train", "tiny", f"data.train={text}", f"out_dir={tmp_path / 'x'}", "--init-from", str(gpt2_hf), "--no-progress"])
    last = err.strip().splitlines()[-1]  # above it, transformers' weight-loading bar
    assert rc == 2 and last.startswith("error:") and "cannot start a dlmkit run" in last and "Traceback" not in err
