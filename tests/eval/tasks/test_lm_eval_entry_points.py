"""lm-eval driven by the researcher, not by `dlm eval harness`: simple_evaluate with the shipped
tasks, lm-eval's own `lm_eval` command and `python -m dlmkit.eval.tasks.harness`, from another folder."""

import json
import os
import subprocess
import sys

import pytest
from readme_packages import require  # README-installed: fail, never skip

require("lm_eval")


def _env():
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_simple_evaluate_with_shipped_tasks_from_any_cwd(sky_ar, tmp_path, monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from dlmkit.eval.tasks.harness import TASKS_DIR, DlmkitLM

    monkeypatch.chdir(tmp_path)  # the task files' data must not be looked up here
    lm = DlmkitLM(pretrained=str(sky_ar))
    res = simple_evaluate(model=lm, tasks=["dlm_choice", "dlm_cloze"], task_manager=TaskManager(include_path=str(TASKS_DIR)),
                          limit=3, bootstrap_iters=0)
    assert set(res["results"]) == {"dlm_choice", "dlm_cloze"}
    assert 0.0 <= res["results"]["dlm_choice"]["acc,none"] <= 1.0
    assert lm.scorer.stats["requests"] == 3 * 2 + 3  # two choices per item, one request per cloze


def _lm_eval_json(out_dir):
    files = list(out_dir.rglob("results*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())["results"]


def test_lm_eval_command_with_shipped_task_file(sky_ar, tmp_path):
    """Stock `lm_eval --model dlmkit`: naming the shipped task file imports dlmkit's registration."""
    from dlmkit.eval.tasks.harness import TASKS_DIR

    lm_eval_bin = os.path.join(os.path.dirname(sys.executable), "lm_eval")
    cmd = [lm_eval_bin] if os.path.exists(lm_eval_bin) else [sys.executable, "-m", "lm_eval"]
    out = subprocess.run([*cmd, "--model", "dlmkit", "--model_args", f"pretrained={sky_ar}", "--tasks", str(TASKS_DIR / "dlm_choice.yaml"),
                          "--limit", "2", "--output_path", str(tmp_path / "out")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    assert "dlm_choice" in _lm_eval_json(tmp_path / "out")


def test_module_cli_finds_shipped_and_own_tasks_by_name(sky_ar, tmp_path):
    """`python -m dlmkit.eval.tasks.harness run`: shipped tasks by name, beside the user's --include_path
    (whose relative data_files are made absolute)."""
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "sky.jsonl").write_text("".join(json.dumps({"q": "the colour of the sky is", "a": " blue"}) + "\n" for _ in range(2)))
    (mine / "sky.yaml").write_text("task: sky_cloze\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/sky.jsonl\n"
                                   "output_type: loglikelihood\ntest_split: test\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\n"
                                   "metric_list:\n  - metric: acc\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-m", "dlmkit.eval.tasks.harness", "run", "--model", "dlmkit", "--model_args", f"pretrained={sky_ar}",
                          "--tasks", "dlm_cloze,sky_cloze", "--include_path", str(mine), "--limit", "2", "--output_path", str(tmp_path / "out")],
                         cwd=elsewhere, capture_output=True, text=True, timeout=600, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    results = _lm_eval_json(tmp_path / "out")
    assert "dlm_cloze" in results and results["sky_cloze"]["acc,none"] == 1.0
    assert "not a git repository" not in out.stderr


def test_tasks_dir_is_printed(tmp_path):
    from dlmkit.eval.tasks.harness import TASKS_DIR

    out = subprocess.run([sys.executable, "-m", "dlmkit.eval.tasks.harness", "tasks-dir"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == str(TASKS_DIR)
    assert (TASKS_DIR / "dlm_cloze.yaml").is_file()


def test_dlm_eval_harness_is_quiet_outside_a_git_repository(sky_ar, tmp_path):
    out = subprocess.run([sys.executable, "-m", "dlmkit.cli", "eval", "harness", str(sky_ar), "--tasks", "dlm_choice", "--limit", "2",
                          "--no-progress", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["harness"]["results"]["dlm_choice"]["acc"] >= 0
    assert "not a git repository" not in out.stderr and "fatal" not in out.stderr
