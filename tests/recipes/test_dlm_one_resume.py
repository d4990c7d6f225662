"""DLM-One is repeatable and resumes exactly: two identical runs give the same bits, and a
``dlm distill dlm-one`` process killed with SIGKILL at random points (inside checkpoint writes too),
then resumed, ends bit for bit equal to an uninterrupted run (student weights and metrics file)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlmkit.cli import main
from kill_points import count_lines, wait_for_lines  # tests/ is on sys.path via its conftest
from seq2seq_pairs import TINY

# dropout on (the global RNG stream), the adversarial term on in stage 2 (the discriminator head),
# a checkpoint at every step (many chances to be killed inside a write)
SETS = ["batch_size=4", "eval_n=8", "log_every=1", "eval_every=2", "save_every=1", "keep_last=2",
        "stage1.steps=8", "stage2.steps=8", "stage2.b_adv=0.1"]


@pytest.fixture(scope="module")
def dropout_teacher(tmp_path_factory, pair_file) -> Path:
    """A tiny diffuseq teacher with dropout 0.1 (its students inherit it)."""
    from dlmkit.engine.config import load_config
    from dlmkit.recipes.pretrain import train

    out = tmp_path_factory.mktemp("runs") / "teacher"
    cfg = load_config("diffuseq-tiny", [*TINY, f"data.train={pair_file}", f"out_dir={out}", "train.steps=6", "model.dropout=0.1"])
    train(cfg, progress=False)
    return out


def _args(teacher: Path, out: Path, *extra: str) -> list[str]:
    args = ["distill", "dlm-one", str(teacher), "--out", str(out), "--no-progress", *extra]
    for item in SETS:
        args += ["--set", item]
    return args


def _bits(out: Path) -> tuple[bytes, bytes]:
    return (out / "student" / "model.safetensors").read_bytes(), (out / "metrics.jsonl").read_bytes()


def test_two_identical_runs_give_identical_weights(dropout_teacher, tmp_path, one_thread):
    torch.manual_seed(123)  # whatever the global RNG held before must not matter
    assert main(_args(dropout_teacher, tmp_path / "a")) == 0
    torch.manual_seed(456)
    assert main(_args(dropout_teacher, tmp_path / "b")) == 0
    a, b = _bits(tmp_path / "a"), _bits(tmp_path / "b")
    assert a[1] == b[1]
    assert a[0] == b[0]


def _checkpoint_write_in_progress(out: Path) -> bool:
    """A temporary checkpoint folder (``.step_N.*``, ``.best.*``) exists: a write is under way."""
    return any(p.name.startswith(".") and p.name != ".lock" for stage in ("stage1", "stage2") for folder in (out / stage, out / stage / "checkpoints")
               if folder.is_dir() for p in folder.iterdir())


def _launch(teacher: Path, out: Path) -> subprocess.Popen:
    resume = ["--resume"] if (out / "distill.json").is_file() else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "dlmkit.cli", *_args(teacher, out, *resume)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_at_random_points_then_resume_is_bitwise_identical(dropout_teacher, tmp_path, one_thread):
    ref = tmp_path / "ref"
    assert main(_args(dropout_teacher, ref)) == 0
    total = count_lines(ref / "metrics.jsonl")
    out = tmp_path / "killed"
    rng = random.Random(15)
    # kill once the metrics file reaches a random length (the run is then mid-way): the first time
    # after a random few milliseconds, then as soon as a checkpoint write is under way
    targets = sorted(rng.sample(range(1, total - 1), 3))
    inside_write = 0
    for k, target in enumerate(targets):
        proc = _launch(dropout_teacher, out)
        wait_for_lines(proc, out / "metrics.jsonl", target)
        if k:
            wait_until = time.time() + 0.2
            while time.time() < wait_until and proc.poll() is None and not _checkpoint_write_in_progress(out):
                time.sleep(0.0002)
            inside_write += _checkpoint_write_in_progress(out)
        else:
            time.sleep(rng.uniform(0.0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run finished before the kill"
    assert inside_write, "no kill landed inside a checkpoint write"
    assert main(_args(dropout_teacher, out, "--resume")) == 0
    a, b = _bits(ref), _bits(out)
    assert a[1] == b[1], "metrics.jsonl differs from the uninterrupted run's"
    assert a[0] == b[0], "the student's weights differ from the uninterrupted run's"


def test_metrics_of_a_killed_stage_are_cut_back(tmp_path):
    """Resume cuts the stage's lines after the checkpoint (all of them when there is none) and a
    half-written last line; the other stage's lines stay."""
    from dlmkit.engine.loop import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    lines = ['{"stage": 1, "step": 0}', '{"stage": 1, "step": 4}', '{"stage": 2, "step": 0}', '{"stage": 2, "step": 1}']
    path.write_text("\n".join(lines) + '\n{"stage": 2, "st', encoding="utf-8")
    truncate_metrics(path, 0, {"stage": 2})
    assert path.read_text(encoding="utf-8") == "".join(line + "\n" for line in lines[:3])
    truncate_metrics(path, -1, {"stage": 2})
    assert path.read_text(encoding="utf-8") == "".join(line + "\n" for line in lines[:2])
