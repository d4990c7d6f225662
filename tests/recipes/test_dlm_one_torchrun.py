"""``dlm distill dlm-one`` under ``torchrun --nproc_per_node 2`` on CPU: both stages run data
parallel, rank 0 alone writes (each metrics line once, one --json line) and the checkpoints hold
every process's random streams."""

import json
import os
import subprocess
import sys

from safetensors.torch import load_file


def test_two_process_torchrun_distils(teacher_run, tmp_path):
    out = tmp_path / "one"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dlmkit.cli",
           "distill", "dlm-one", str(teacher_run), "--out", str(out), "--no-progress", "--json",
           "batch_size=4", "eval_n=8", "log_every=1", "eval_every=2", "save_every=2", "stage1.steps=4", "stage2.steps=2",
           "stage2.b_adv=0.1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    json_lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1
    res = json.loads(json_lines[0])
    assert res["stage1"]["steps"] == 4 and res["stage2"]["steps"] == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["stage"], r["step"]) for r in records]
    assert len(keys) == len(set(keys)) and (1, 4) in keys and (2, 2) in keys
    state = load_file(str(out / "stage1" / "checkpoints" / "step_0000004" / "train_state.safetensors"))
    assert {"rng/0/gen", "rng/1/gen"} <= state.keys() and not state["rng/0/gen"].equal(state["rng/1/gen"])
    assert (out / "student" / "model.safetensors").is_file()
