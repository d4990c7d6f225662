"""`dlm distill sdtt` on tiny mdlm models: rounds, per-round students that every command takes with
their recommended steps, teacher refresh, errors, and a resume after SIGKILL bit for bit."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from dlmkit.cli import main
from fixtures_runs import TINY
from kill_points import count_lines, wait_for_lines

SETS = ["train.save_every=1", "train.keep_last=2", "train.eval_every=2", "train.log_every=1", "model.dropout=0.1", "train.ema=0.9"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, corpus) -> Path:
    from dlmkit.engine.config import load_config
    from dlmkit.recipes.pretrain import train

    out = tmp_path_factory.mktemp("sdtt") / "teacher"
    train(load_config("tiny", [*TINY, "model.kind=mdlm", f"data.train={corpus}", f"out_dir={out}", "train.steps=6"]), progress=False)
    return out


def _args(teacher: Path, out: Path, *extra: str) -> list[str]:
    return ["distill", "sdtt", str(teacher), "--out", str(out), "--rounds", "2", "--start-steps", "8", "--round-steps", "3",
            "--no-progress", *SETS, *extra]


def _run(capsys, argv: list[str]) -> tuple[int, dict | None, str]:
    rc = main(argv)
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.strip()]
    return rc, (json.loads(lines[-1]) if rc == 0 and "--json" in argv and lines else None), out.err


def test_rounds_students_and_teacher_refresh(teacher, tmp_path, capsys, corpus, one_thread):
    out = tmp_path / "s"
    rc, res, err = _run(capsys, _args(teacher, out, "--json"))
    assert rc == 0, err
    assert [(r["round"], r["teacher_steps"], r["student_steps"]) for r in res["rounds"]] == [(1, 8, 4), (2, 4, 2)]
    assert res["steps"] == 6 and res["recommended_steps"] == 2 and res["student"] == str(out / "students" / "round_2")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(x["step"], x["round"], x["student_steps"]) for x in lines] == [(s, 1 + (s > 3), 4 if s <= 3 else 2) for s in range(1, 7)]
    # round 2's teacher is round 1's raw student (the step-3 checkpoint's raw weights), not the start
    t1, t2 = load_file(out / "teachers" / "round_1.safetensors"), load_file(out / "teachers" / "round_2.safetensors")
    start = load_file(sorted((teacher / "checkpoints").glob("step_*"))[-1] / "model.safetensors")
    assert all((t1[k] == start[k]).all() for k in start)
    assert any((t2[k] != t1[k]).any() for k in t1)
    # the students are mdlm checkpoints that record their steps; `dlm sample` uses them by default
    for r, k in ((1, 4), (2, 2)):
        folder = out / "students" / f"round_{r}"
        assert json.loads((folder / "config.json").read_text())["recommended_steps"] == k
        rc, res, err = _run(capsys, ["sample", str(folder), "--n", "2", "--json"])
        assert rc == 0, err
        assert res["steps"] == k and res["nfe"] <= k and res["kind"] == "mdlm"
    rc, res, err = _run(capsys, ["sample", str(out / "students" / "round_2"), "--n", "1", "--steps", "5", "--json"])
    assert res["steps"] == 5
    rc, res, err = _run(capsys, ["sample", str(teacher), "--n", "1", "--json"])
    assert res["steps"] == 128  # a model that records none: the old default
    rc, res, err = _run(capsys, ["eval", "ppl", str(out / "students" / "round_2"), "--data", str(corpus), "--json"])
    assert rc == 0, err


def test_divergences_and_ema_refresh(teacher, tmp_path, capsys, one_thread):
    for name in ("rkl", "mse", "tvd"):  # the target by its flag and by its config key
        target = ["--target", "reference"] if name == "rkl" else ["distill.sdtt.target=reference"]
        rc, res, err = _run(capsys, _args(teacher, tmp_path / name, "--divergence", name, *target, "--json"))
        assert rc == 0, err
        assert res["divergence"] == name and res["target"] == "reference" and all(r["loss"] is not None and r["loss"] >= 0 for r in res["rounds"])
    rc, res, err = _run(capsys, _args(teacher, tmp_path / "ema", "distill.sdtt.refresh=ema", "--json"))
    assert rc == 0, err
    # refresh from the EMA: round 2's teacher is round 1's published (EMA) student
    t2 = load_file(tmp_path / "ema" / "teachers" / "round_2.safetensors")
    s1 = load_file(tmp_path / "ema" / "students" / "round_1" / "model.safetensors")
    assert all((s1[k] == t2[k]).all() for k in s1)


def test_errors(teacher, tmp_path, capsys, corpus):
    from dlmkit.engine.config import load_config
    from dlmkit.recipes.pretrain import train

    ar = tmp_path / "ar"
    train(load_config("tiny", [*TINY, "model.kind=ar", f"data.train={corpus}", f"out_dir={ar}", "train.steps=1"]), progress=False)
    cases = [
        (_args(ar, tmp_path / "e1"), "masked diffusion"),
        (_args(teacher, tmp_path / "e2", "--start-steps", "6"), "not a multiple of 4"),
        (_args(teacher, tmp_path / "e3", "distill.sdtt.refresh=both"), "refresh"),
        (_args(teacher, tmp_path / "e7", "distill.sdtt.target=joint"), "distill.sdtt.target"),
        (["distill", "sdtt", "--out", str(tmp_path / "e4")], "give the TEACHER"),
        (["distill", "sdtt", str(tmp_path / "nothing"), "--out", str(tmp_path / "e5")], "no such"),
        (["distill", "sdtt", str(teacher), "--resume", str(tmp_path / "e6")], "no TEACHER"),
    ]
    for argv, message in cases:
        rc, _, err = _run(capsys, argv)
        assert rc == 2 and message in err and "Traceback" not in err, (argv, err)


# ---- resume after SIGKILL ----------------------------------------------------------------------


def _bits(out: Path) -> tuple[bytes, list[dict], bytes]:
    lines = [{k: v for k, v in json.loads(x).items() if k != "tokens_per_s"} for x in (out / "metrics.jsonl").read_text().splitlines()]
    return (out / "students" / "round_2" / "model.safetensors").read_bytes(), lines, (out / "teachers" / "round_2.safetensors").read_bytes()


def _launch(teacher: Path, out: Path) -> subprocess.Popen:
    argv = ["distill", "sdtt", "--resume", str(out)] if (out / "checkpoints").is_dir() else _args(teacher, out)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "dlmkit.cli", *argv, "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_then_resume_is_bitwise_identical(teacher, tmp_path, one_thread):
    ref = tmp_path / "ref"
    assert main(_args(teacher, ref)) == 0
    total = count_lines(ref / "metrics.jsonl")
    out = tmp_path / "killed"
    rng = random.Random(19)
    kills = 0
    for target in sorted(rng.sample(range(1, total), 3)):  # kills across the round boundary
        proc = _launch(teacher, out)
        wait_for_lines(proc, out / "metrics.jsonl", target)
        time.sleep(rng.uniform(0.0, 0.01))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
    assert kills >= 2
    assert main(["distill", "sdtt", "--resume", str(out), "--no-progress"]) == 0
    a, b = _bits(ref), _bits(out)
    assert a[1] == b[1], "metrics.jsonl differs from the uninterrupted run's"
    assert a[2] == b[2], "round 2's teacher differs"
    assert a[0] == b[0], "the student's weights differ from the uninterrupted run's"


def test_two_process_torchrun(teacher, tmp_path):
    """Data parallel under ``torchrun --nproc_per_node 2`` on CPU: every process holds the teacher,
    rank 0 alone writes, the checkpoints hold both processes' random streams."""
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dlmkit.cli",
           *_args(teacher, out, "--json")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    json_lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1 and json.loads(json_lines[0])["recommended_steps"] == 2
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    state = load_file(str(out / "checkpoints" / "step_0000006" / "train_state.safetensors"))
    assert {"rng/0/gen", "rng/1/gen"} <= state.keys() and not state["rng/0/gen"].equal(state["rng/1/gen"])
    assert (out / "students" / "round_2" / "model.safetensors").is_file()
