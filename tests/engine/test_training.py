import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from dlmkit.engine.config import dump_yaml
from dlmkit.errors import DlmError
from dlmkit.hub.checkpoint import step_folders
from dlmkit.hub.load import load as load_model
from dlmkit.engine.loop import resume_config
from dlmkit.recipes.pretrain import train


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_loss_decreases_and_run_folder_is_complete(tiny_cfg):
    cfg = tiny_cfg("run", "train.steps=30", "train.lr=3e-3", "train.save_every=10", "train.keep_last=2")
    result = train(cfg, progress=False)
    run = Path(cfg.out_dir)
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    assert [p.name for p in step_folders(run)] == ["step_0000030", "step_0000020"]  # keep_last=2
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()
    assert list((run / "samples").glob("*.txt"))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["step"] for line in lines)
    model, tok = load_model(run)
    assert model.kind == "ar" and tok.vocab_size == model.config["backbone"]["vocab_size"]
    assert not model.training


def _launch(cfg_path: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "dlmkit.cli", "train", str(cfg_path), "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_then_resume_is_bitwise_identical(tiny_cfg, tmp_path, one_thread):
    """A run killed with SIGKILL mid-way and resumed ends with the same bits as an uninterrupted one.

    Dropout and an EMA are on, so the RNG streams, the EMA and the optimiser must all be restored.
    """
    extra = ("train.steps=150", "train.save_every=10", "train.eval_every=50", "model.dropout=0.1", "train.ema=0.9", "train.keep_last=3")
    ref_cfg = tiny_cfg("ref", *extra)
    train(ref_cfg, progress=False)

    cfg = tiny_cfg("killed", *extra)
    cfg_path = tmp_path / "killed.yaml"
    cfg_path.write_text(dump_yaml(cfg))
    proc = _launch(cfg_path)
    run = Path(cfg.out_dir)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step_0000020").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "checkpoints" / "step_0000150").exists(), "the run finished before the kill"

    train(resume_config(run), resume=True, progress=False)
    ref, got = weights(Path(ref_cfg.out_dir) / "checkpoints" / "step_0000150"), weights(run / "checkpoints" / "step_0000150")
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    ref_state = load_file(str(Path(ref_cfg.out_dir) / "checkpoints" / "step_0000150" / "train_state.safetensors"))
    got_state = load_file(str(run / "checkpoints" / "step_0000150" / "train_state.safetensors"))
    raw = [k for k in ref_state if k.startswith("raw/")]
    assert raw and all(torch.equal(ref_state[k], got_state[k]) for k in raw)


def test_resume_falls_back_from_a_truncated_checkpoint(tiny_cfg, capsys):
    cfg = tiny_cfg("run", "train.steps=8", "train.keep_last=5")
    train(cfg, progress=False)
    run = Path(cfg.out_dir)
    newest = run / "checkpoints" / "step_0000008" / "train_state.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    cfg2 = resume_config(run, ["train.steps=10"])
    result = train(cfg2, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "step_0000008" in err and "falling back" in err
    assert "resumed" in err and "step 4" in err
    assert result.steps == 10


def test_resume_errors(tmp_path, tiny_cfg):
    with pytest.raises(DlmError, match="not a dlmkit run folder"):
        resume_config(tmp_path)
    cfg = tiny_cfg("run", "train.steps=4")
    train(cfg, progress=False)
    with pytest.raises(DlmError, match="already holds a run"):
        train(cfg, progress=False)
    model_file = Path(cfg.out_dir) / "checkpoints" / "step_0000004" / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:50])
    with pytest.raises(DlmError, match="model.safetensors"):
        load_model(model_file.parent)


def test_foreign_checkpoint_is_rejected(tiny_cfg):
    a = tiny_cfg("a", "train.steps=2")
    b = tiny_cfg("b", "train.steps=2", "model.d_model=64")
    train(a, progress=False)
    train(b, progress=False)
    fa = step_folders(Path(a.out_dir))[0]
    fb = step_folders(Path(b.out_dir))[0]
    shutil.copy(fb / "model.safetensors", fa / "model.safetensors")
    with pytest.raises(DlmError, match="another model"):
        load_model(fa)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = train(cfg, progress=False)
        if rank == 0:
            Path(out).write_text(json.dumps(result.history))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(tiny_cfg, tmp_path, strategy):
    """DDP or FSDP on two gloo processes with the same global batch follows the one-process loss
    curve, and the saved (gathered) weights match."""
    extra = ("train.steps=10", "train.eval_every=5", "train.save_every=10", "train.ema=0.9")
    single = tiny_cfg("single", *extra)
    one = train(single, progress=False).history
    double = tiny_cfg("double", *extra, f"train.distributed={strategy}")
    shutil.copytree(Path(single.out_dir) / "tokenizer", Path(double.out_dir) / "tokenizer")
    out = tmp_path / "history.json"
    mp.spawn(_worker, args=(2, _free_port(), double, str(out)), nprocs=2, join=True)
    two = json.loads(out.read_text())
    l1 = [h["loss"] for h in one if "loss" in h]
    l2 = [h["loss"] for h in two if "loss" in h]
    assert len(l1) == len(l2) == 10
    assert l1 == pytest.approx(l2, rel=1e-4)
    v1 = [h["val_loss"] for h in one if "val_loss" in h]
    v2 = [h["val_loss"] for h in two if "val_loss" in h]
    assert v1 == pytest.approx(v2, rel=1e-4)
    for name in ("model.safetensors", "train_state.safetensors"):
        w1 = load_file(str(step_folders(Path(single.out_dir))[0] / name))
        w2 = load_file(str(step_folders(Path(double.out_dir))[0] / name))
        shared = [k for k in w1 if not k.startswith("rng/")]
        assert shared and set(shared) <= set(w2)
        assert all(torch.allclose(w1[k].double(), w2[k].double(), atol=1e-5) for k in shared)
