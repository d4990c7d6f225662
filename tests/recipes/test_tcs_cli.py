"""`dlm distill tcs` end to end on tiny models (in process, JSON last line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlmkit.cli import main
from dlmkit.engine.config import load_config

TINY = [
    "model.n_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_cond=16",
    "model.seq_len=16",
    "tokenizer.vocab_size=300",
    "train.batch_size=4",
    "train.warmup=1",
    "train.eval_every=1000",
    "train.eval_blocks=4",
    "train.save_every=1000",
    "train.log_every=1000",
    "train.sample_steps=2",
]


def _train(out: Path, data: Path, kind: str, steps: int) -> Path:
    from dlmkit.recipes.pretrain import train

    train(load_config("tiny", [*TINY, f"model.kind={kind}", f"data.train={data}", f"out_dir={out}", f"train.steps={steps}"]), progress=False)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tcs")
    text = root / "text.txt"
    text.write_text("".join(f"the {c} cat sat on the {m} mat and looked at the {c} bird.\n" for c, m in
                            [("red", "blue"), ("old", "new"), ("small", "big"), ("grey", "warm")] * 12), encoding="utf-8")
    other = root / "other.txt"
    other.write_text("zebras quickly jumped over seventeen lazy foxes in xylophone valleys.\n" * 30, encoding="utf-8")
    teacher = _train(root / "teacher", text, "ar", 3)
    return root, text, other, teacher


def _run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    rc = main(["distill", "tcs", *argv, "--no-progress"])
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.strip()]
    return rc, (json.loads(lines[-1]) if rc == 0 and lines else None), out.err


def test_cli_from_scratch_resume_and_from_run(setup, capsys):
    root, text, _, teacher = setup
    out = root / "mdlm_topk"
    rc, res, err = _run(capsys, "--teacher", str(teacher), "--student", "tiny", "--data", str(text), "--out", str(out),
                        "--top-k", "3", "--json", *TINY, "train.steps=2")
    assert rc == 0, err
    assert res["kind"] == "mdlm" and res["estimator"] == "topk" and res["steps"] == 2
    assert res["teacher_tok_per_target"] > 0 and 0 < res["teacher_share"] < 1
    record = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert {"tcs", "data", "teacher_share", "teacher_tok_per_target"} <= set(record)
    cfg = load_config(str(out / "config.yaml"))
    assert cfg.distill.teacher == str(teacher) and cfg.tokenizer.kind == "hf"

    rc, res, err = _run(capsys, "--resume", str(out), "train.steps=3", "--json")
    assert rc == 0, err
    assert res["steps"] == 3

    # a trained diffusion run as the student, mixed with the data loss, left-context proxy
    rc, res, err = _run(capsys, "--teacher", str(teacher), "--student", str(out), "--data", str(text),
                        "--out", str(root / "from_run"), "--estimator", "left", "--alpha", "0.5", "--json", "train.steps=1")
    assert rc == 0, err
    assert res["alpha"] == 0.5 and res["estimator"] == "left" and res["kind"] == "mdlm"


def test_cli_sedd_absorb_exact(setup, capsys):
    root, text, _, teacher = setup
    rc, res, err = _run(capsys, "--teacher", str(teacher), "--student", "tiny", "--kind", "sedd_absorb", "--data", str(text),
                        "--out", str(root / "sedd"), "--estimator", "exact", "--json", *TINY, "train.steps=1",
                        "train.batch_size=1", "distill.tcs.teacher_batch=512")
    assert rc == 0, err
    assert res["kind"] == "sedd_absorb" and res["teacher_rows_per_target"] > 100  # every vocabulary substitution


def test_cli_errors(setup, capsys):
    root, text, other, teacher = setup
    foreign = _train(root / "foreign", other, "mdlm", 1)  # its own BPE, trained on other text
    rc, _, err = _run(capsys, "--teacher", str(teacher), "--student", str(foreign), "--data", str(text), "--out", str(root / "x"))
    assert rc == 2 and "teacher's tokenizer" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _run(capsys, "--teacher", str(teacher), "--student", str(teacher), "--data", str(text), "--out", str(root / "y"))
    assert rc == 2 and "not 'ar'" in err
    rc, _, err = _run(capsys, "--teacher", str(foreign), "--student", "tiny", "--data", str(text), "--out", str(root / "z"), *TINY)
    assert rc == 2 and "not autoregressive" in err


def test_cli_hf_teacher_folder(setup, capsys):
    """A local Hugging Face causal-LM folder as the teacher (a random 2-layer GPT-2)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from dlmkit.hub.teachers import load_teacher
    from dlmkit.hub.checkpoint import resolve_model_folder

    root, text, _, teacher = setup
    folder = root / "gpt2-tiny"
    tok = PreTrainedTokenizerFast(tokenizer_file=str(resolve_model_folder(teacher) / "tokenizer.json"),
                                  eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|pad|>")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=16, n_head=2, n_positions=32,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    t = load_teacher(str(folder), "cpu")
    x = torch.randint(4, len(tok), (2, 8))
    want = torch.log_softmax(model(input_ids=torch.cat([torch.zeros(2, 1, dtype=torch.long), x[:, :-1]], 1)).logits, -1)
    want[..., t.tokenizer.mask_id] = -torch.inf
    torch.testing.assert_close(t.next_logprobs(x), torch.log_softmax(want, -1), atol=1e-5, rtol=1e-5)
    rc, res, err = _run(capsys, "--teacher", str(folder), "--student", "tiny", "--data", str(text), "--out", str(root / "hf"),
                        "--top-k", "2", "--json", *TINY, "train.steps=1")
    assert rc == 0, err
    assert res["teacher_tok_per_target"] > 0
