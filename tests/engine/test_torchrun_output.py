"""Under torchrun only rank 0 prints: one summary, one --json line, each warning once."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("strategy", ["fsdp"])
def test_two_process_torchrun_prints_once(corpus, tiny_overrides, tmp_path, strategy):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dlmkit.cli", "train", "tiny",
           *tiny_overrides, "train.steps=2", "train.eval_every=2", "train.save_every=2", f"train.distributed={strategy}",
           f"data.train={corpus}", f"out_dir={tmp_path / 'run'}", "--no-progress", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    json_lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1 and json.loads(json_lines[0])["steps"] == 2
    assert sum(line.startswith("trained ") for line in out.stdout.splitlines()) == 1
    warnings = [line for line in out.stderr.splitlines() if "Warning:" in line]
    assert len(warnings) == len(set(warnings)), warnings  # no warning repeated by the second rank
