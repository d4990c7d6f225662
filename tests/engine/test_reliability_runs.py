"""Run folders, checkpoints and resume under hostile conditions (issue 15): foreign checkpoints,
kills at any point (inside checkpoint writes too), torn logs, leftovers, two writers, a changed
schedule, permissions, durability, corrupt newest checkpoints, and validation across process counts."""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from dlmkit.cli import main
from dlmkit.engine.config import dump_yaml, load_config
from dlmkit.errors import DlmError
from dlmkit.hub import checkpoint as ckpt
from dlmkit.hub.load import load as load_model
from dlmkit.engine.loop import lr_factor, resume_config
from dlmkit.recipes.pretrain import Trainer, train


TIMING = {"tokens_per_s", "teacher_s", "teacher_share"}  # wall-clock figures: the only fields allowed to differ


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().split("\n") if line.strip()]


def untimed(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records(run)]


def cli(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


# ---- 2. checkpoint identity -------------------------------------------------------------------


def test_checkpoint_of_another_kind_is_refused_everywhere(tiny_cfg, capsys):
    """An mdlm step folder placed as the newest checkpoint of an ar run: resume, sample and eval refuse it."""
    ar = tiny_cfg("ar", "train.steps=2")
    md = tiny_cfg("md", "train.steps=3", "model.kind=mdlm")
    train(ar, progress=False)
    shutil.copytree(Path(ar.out_dir) / "tokenizer", Path(md.out_dir) / "tokenizer")  # the same tokenizer
    train(md, progress=False)
    run = Path(ar.out_dir)
    shutil.copytree(Path(md.out_dir) / "checkpoints" / "step_0000003", run / "checkpoints" / "step_0000003")
    with pytest.raises(ckpt.CheckpointMismatch, match="a mdlm model, not ar"):
        train(resume_config(run, ["train.steps=4"]), resume=True, progress=False)
    rc, err = cli(capsys, "train", "--resume", str(run), "train.steps=4", "--no-progress")
    assert rc == 2 and err.startswith("error: ") and "not ar" in err and len(err.strip().splitlines()) == 1
    assert "steps: 2\n" in (run / "config.yaml").read_text()  # the refused resume did not rewrite the run's config
    for argv in (["sample", str(run), "--n", "1", "--length", "8", "--steps", "2"],
                 ["eval", "ppl", str(run), "--data", str(next(iter(Path(ar.data.train).iterdir()))), "--max-sequences", "2"]):
        rc, err = cli(capsys, *argv)
        assert rc == 2 and "mdlm checkpoint inside the ar run" in err and len(err.strip().splitlines()) == 1


def test_mixed_up_checkpoint_folder_is_refused(tiny_cfg, tiny_overrides, tmp_path, capsys):
    """Weights of one kind under another kind's config (same shapes): --init-from, sample and resume refuse."""
    ar = tiny_cfg("ar", "train.steps=2")
    md = tiny_cfg("md", "train.steps=2", "model.kind=mdlm")
    train(ar, progress=False)
    train(md, progress=False)
    mixed = tmp_path / "mixed"
    shutil.copytree(ckpt.step_folders(Path(ar.out_dir))[0], mixed)
    shutil.copy(ckpt.step_folders(Path(md.out_dir))[0] / "model.safetensors", mixed / "model.safetensors")
    with pytest.raises(ckpt.CheckpointMismatch, match="another model"):
        load_model(mixed)
    rc, err = cli(capsys, "train", "tiny", *tiny_overrides, f"data.train={ar.data.train}", f"out_dir={tmp_path / 'x'}", "--init-from", str(mixed), "--no-progress")
    assert rc == 2 and "another model" in err and len(err.strip().splitlines()) == 1
    # a tokenizer of the same size trained on other text: another fingerprint
    from pydoc_data.topics import topics

    text = tmp_path / "other.txt"
    text.write_text("".join(topics[k] for k in sorted(topics)[40:80]), encoding="utf-8")
    other = tiny_cfg("other", "train.steps=2", f"data.train={text}")
    train(other, progress=False)
    step = ckpt.step_folders(Path(ar.out_dir))[0]
    for name in ("tokenizer.json", "dlm_tokenizer.json"):
        shutil.copy(ckpt.step_folders(Path(other.out_dir))[0] / name, step / name)
    with pytest.raises(ckpt.CheckpointMismatch, match="another tokenizer"):
        load_model(step)
    with pytest.raises(ckpt.CheckpointMismatch):
        train(resume_config(ar.out_dir, ["train.steps=3"]), resume=True, progress=False)


# ---- 3. DiffuSeq's loss-aware time sampler ----------------------------------------------------


def _diffuseq_cfg(tmp_path: Path, name: str, *extra: str):
    from seq2seq_pairs import PAIRS, TINY as S2S, write_pairs

    pairs = tmp_path / "pairs.jsonl"
    if not pairs.is_file():
        write_pairs(pairs, PAIRS * 2)
    return load_config("diffuseq-tiny", [*S2S, f"data.train={pairs}", f"out_dir={tmp_path / name}",
                                         "diffusion.continuous.timesteps=10", "diffusion.continuous.t_sampler=lossaware", *extra])


def test_diffuseq_lossaware_sampler_resumes_exactly(tmp_path, one_thread):
    """The sampler warms up (10 t x 10 losses) within 30 steps of 8 rows; a resume from step 30 must continue with its history."""
    extra = ("train.steps=36", "train.save_every=30", "train.keep_last=5")
    ref = _diffuseq_cfg(tmp_path, "ref", *extra)
    train(ref, progress=False)
    cut = _diffuseq_cfg(tmp_path, "cut", *extra)
    shutil.copytree(Path(ref.out_dir) / "tokenizer", Path(cut.out_dir) / "tokenizer")
    train(cut, progress=False)
    run = Path(cut.out_dir)
    state = load_file(str(run / "checkpoints" / "step_0000030" / "train_state.safetensors"))
    assert int(state["method/0/time_sampler/counts"].min()) == 10  # warmed up: the draws depend on the history
    shutil.rmtree(run / "checkpoints" / "step_0000036")
    train(resume_config(run), resume=True, progress=False)
    a = load_file(str(Path(ref.out_dir) / "checkpoints" / "step_0000036" / "model.safetensors"))
    b = load_file(str(run / "checkpoints" / "step_0000036" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert untimed(Path(ref.out_dir)) == untimed(run)


# ---- 4. metrics.jsonl ---------------------------------------------------------------------------


def test_metrics_of_a_run_killed_before_its_first_checkpoint_start_over(tiny_cfg):
    cfg = tiny_cfg("run", "train.steps=6", "train.save_every=0")
    train(cfg, progress=False)
    run = Path(cfg.out_dir)
    want = untimed(run)
    shutil.rmtree(run / "checkpoints")  # as if killed after logging steps 1-6 but before any checkpoint
    train(resume_config(run), resume=True, progress=False)
    assert untimed(run) == want  # steps 1-6 once, the same numbers


def test_metrics_with_a_torn_last_line_resume(tiny_cfg):
    cfg = tiny_cfg("run", "train.steps=4", "train.save_every=2", "train.keep_last=5")
    train(cfg, progress=False)
    run = Path(cfg.out_dir)
    want = untimed(run)
    shutil.rmtree(run / "checkpoints" / "step_0000004")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"loss": 5.1, "lr": 0.0')  # a kill in the middle of a write
    train(resume_config(run), resume=True, progress=False)
    assert untimed(run) == want
    # a damaged line elsewhere is not guessed at: one line naming it
    lines = (run / "metrics.jsonl").read_text().split("\n")
    lines[1] = lines[1][:10]
    (run / "metrics.jsonl").write_text("\n".join(lines))
    shutil.rmtree(run / "checkpoints" / "step_0000004")
    with pytest.raises(DlmError, match=r"metrics.jsonl:2: not JSON"):
        train(resume_config(run), resume=True, progress=False)


def test_dlm_one_metrics_truncation_tolerates_a_torn_line(tmp_path):
    from dlmkit.engine.loop import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    rows = [{"stage": 1, "step": 0}, {"stage": 1, "step": 2}, {"stage": 1, "step": 4}, {"stage": 2, "step": 0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"stage": 2, "st')
    truncate_metrics(path, -1, {"stage": 2})  # stage 2 starts over: its lines go, the torn one too
    assert [json.loads(x) for x in path.read_text().splitlines()] == rows[:3]
    truncate_metrics(path, 2, {"stage": 1})
    assert [json.loads(x) for x in path.read_text().splitlines()] == rows[:2]


# ---- 5. leftovers of a kill ---------------------------------------------------------------------


def test_leftovers_of_a_kill_are_cleared_on_resume(tiny_cfg, capsys):
    cfg = tiny_cfg("run", "train.steps=4", "train.save_every=2", "train.keep_last=5")
    train(cfg, progress=False)
    run, ck = Path(cfg.out_dir), Path(cfg.out_dir) / "checkpoints"
    tmp_step = ck / ".step_0000006.tmp-k1ll3d"  # a step checkpoint being written
    shutil.copytree(ck / "step_0000004", tmp_step)
    legacy = ck / ".step_0000008.ab12cd34"  # the temporary name older dlmkit used
    legacy.mkdir()
    os.replace(ck / "best", ck / ".best.old")  # killed between the two renames that replace best
    (run / ".metrics.jsonl.x1y2z3w4.tmp").write_text("{")  # an atomic write that never got renamed
    best_weights = load_file(str(ck / ".best.old" / "model.safetensors"))
    train(resume_config(run, ["train.steps=5"]), resume=True, progress=False)
    assert "left by a killed run" in capsys.readouterr().err
    assert sorted(p.name for p in ck.iterdir() if p.name.startswith(".")) == []
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [".lock"]
    got = load_file(str(ck / "best" / "model.safetensors"))  # put back (and maybe replaced by a better one since)
    assert got.keys() == best_weights.keys()


# ---- 6. one writer per run folder ---------------------------------------------------------------


def test_a_second_writer_on_a_run_folder_is_refused(tiny_cfg, tiny_overrides, corpus, capsys):
    cfg = tiny_cfg("run", "train.steps=2")
    first = Trainer(cfg, progress=False)  # holds the run folder
    try:
        with pytest.raises(DlmError, match="in use by another dlm process"):
            Trainer(tiny_cfg("run", "train.steps=2"), progress=False)
        rc, err = cli(capsys, "train", "tiny", *tiny_overrides, f"data.train={corpus}", f"out_dir={cfg.out_dir}", "--no-progress")
        assert rc == 2 and f"pid {os.getpid()}" in err and len(err.strip().splitlines()) == 1
        assert not (Path(cfg.out_dir) / "metrics.jsonl").exists()
    finally:
        first.fit()
    assert train(resume_config(cfg.out_dir, ["train.steps=3"]), resume=True, progress=False).steps == 3  # released


def test_the_lock_dies_with_a_killed_process(tiny_cfg, tmp_path):
    cfg = tiny_cfg("run", "train.steps=100000", "train.save_every=0", "train.eval_every=0")
    (tmp_path / "run.yaml").write_text(dump_yaml(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "dlmkit.cli", "train", str(tmp_path / "run.yaml"), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, OMP_NUM_THREADS="1"))
    run = Path(cfg.out_dir)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").is_file():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    err = subprocess.run([sys.executable, "-m", "dlmkit.cli", "train", "--resume", str(run), "--no-progress"],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1")).stderr
    assert f"in use by another dlm process (pid {proc.pid})" in err and len(err.strip().splitlines()) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert train(resume_config(run, ["train.steps=2"]), resume=True, progress=False).steps == 2


# ---- 10. resume with another train.steps --------------------------------------------------------


def test_resume_with_more_steps_keeps_the_schedule_unless_told(tiny_cfg, capsys):
    cfg = tiny_cfg("run", "train.steps=8", "train.lr=1e-3", "train.warmup=2")
    train(cfg, progress=False)
    run = Path(cfg.out_dir)
    shutil.copytree(run, run.with_name("again"))
    train(resume_config(run, ["train.steps=12"]), resume=True, progress=False)
    err = capsys.readouterr().err
    assert "keeps the run's cosine over 8 steps" in err and "train.schedule_steps=12 re-stretches" in err
    lrs = {r["step"]: r["lr"] for r in records(run) if "lr" in r}
    assert lrs[9] == lrs[12] == pytest.approx(1e-3 * 0.1)  # no jump: the final learning rate
    assert load_config(str(run / "config.yaml")).train.schedule_steps == 8  # recorded: later resumes agree
    again = run.with_name("again")
    (again / ".lock").unlink()
    train(resume_config(again, ["train.steps=12", "train.schedule_steps=12"]), resume=True, progress=False)
    assert "re-stretched over 12 steps (it was 8)" in capsys.readouterr().err
    lrs = {r["step"]: r["lr"] for r in records(again) if "lr" in r}
    assert lrs[9] == pytest.approx(1e-3 * lr_factor(9, load_config(str(again / "config.yaml"))))
    assert lrs[9] > lrs[8]  # what the user asked for


# ---- 11. permissions, 12. durability -----------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_respect_the_umask(tiny_cfg, tmp_path, umask, capsys):
    old = os.umask(umask)
    try:
        cfg = tiny_cfg("run", "train.steps=2")
        train(cfg, progress=False)
        out = tmp_path / "samples.txt"
        assert main(["sample", cfg.out_dir, "--n", "1", "--length", "8", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    paths = [out, *Path(cfg.out_dir).rglob("*")]
    bad = [(str(p), oct(stat.S_IMODE(p.stat().st_mode))) for p in paths
           if stat.S_IMODE(p.stat().st_mode) != (0o777 if p.is_dir() else 0o666) & ~umask]
    assert not bad


def test_checkpoint_publish_is_durable(tiny_cfg, monkeypatch):
    cfg = tiny_cfg("run", "train.steps=1")
    train(cfg, progress=False)
    model, tok = load_model(cfg.out_dir)
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", f"{a} -> {b}")), real_replace(a, b))[1])
    final = Path(cfg.out_dir) / "published"
    ckpt.save_checkpoint(final, model, tok, state_tensors={"x": torch.zeros(2)}, state_json={})
    renames = [i for i, (what, arg) in enumerate(events) if what == "replace" and arg.endswith(f"-> {final}")]
    assert len(renames) == 1
    before = {arg for what, arg in events[: renames[0]] if what == "fsync"}
    tmp = events[renames[0]][1].split(" -> ")[0]
    assert {f"{tmp}/{p.name}" for p in final.iterdir()} | {tmp} <= before  # every file and the folder itself
    assert ("fsync", str(final.parent)) in events[renames[0] :]  # and the rename


# ---- 13. sample / eval on a run whose newest checkpoint is damaged ------------------------------


def test_sample_and_eval_fall_back_to_the_newest_good_checkpoint(tiny_cfg, capsys):
    cfg = tiny_cfg("run", "train.steps=8", "train.keep_last=5")
    train(cfg, progress=False)
    run = Path(cfg.out_dir)
    newest = run / "checkpoints" / "step_0000008" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:200])
    model, _ = load_model(run)
    err = capsys.readouterr().err
    assert "step_0000008" in err and "using" in err and "step_0000004" in err
    want = load_file(str(run / "checkpoints" / "step_0000004" / "model.safetensors"))
    shared = [k for k in model.state_dict() if k in want]
    assert shared and all(torch.equal(model.state_dict()[k], want[k]) for k in shared)
    rc, err = cli(capsys, "sample", str(run), "--n", "1", "--length", "8", "--steps", "2")
    assert rc == 0 and "step_0000004" in err
    data = next(iter(Path(cfg.data.train).iterdir()))
    rc, err = cli(capsys, "eval", "ppl", str(run), "--data", str(data), "--max-sequences", "2")
    assert rc == 0 and "step_0000004" in err


# ---- 14. validation does not depend on the number of processes ---------------------------------


def _eval_worker(rank: int, world: int, rendezvous: str, run: str, out: str, strategy: str) -> None:
    torch.set_num_threads(1)
    # a file rendezvous: no TCP port that a concurrent test could take between choosing and binding it
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world, timeout=timedelta(seconds=120))
    try:
        trainer = Trainer(resume_config(run, [f"train.distributed={strategy}"]), resume=True, progress=False)
        value = trainer.evaluate()
        trainer.close()
        del trainer  # its DDP / FSDP wrappers hold the group: freed at exit, after the peer left, gloo can hang
        gc.collect()
        if rank == 0:
            Path(out).write_text(json.dumps(value))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("kind,strategy", [("mdlm", "ddp"), ("sedd_uniform", "fsdp")])
def test_validation_loss_is_the_same_under_one_and_two_processes(tiny_cfg, tmp_path, kind, strategy, one_thread):
    """Three chunks (40 blocks) on two processes: one process evaluates two (under FSDP the other
    repeats a forward pass, as every pass is collective)."""
    cfg = tiny_cfg("run", "train.steps=2", f"model.kind={kind}", "train.eval_blocks=40", "train.batch_size=6")
    train(cfg, progress=False)
    trainer = Trainer(resume_config(cfg.out_dir), resume=True, progress=False)
    one = trainer.evaluate()
    trainer.close()
    out = tmp_path / "two.json"
    mp.spawn(_eval_worker, args=(2, str(tmp_path / "rendezvous"), cfg.out_dir, str(out), strategy), nprocs=2, join=True)
    assert json.loads(out.read_text()) == one  # bit for bit: same chunks, same noise, same order of sums


# ---- SIGKILL anywhere, then --resume: bit for bit the uninterrupted run --------------------------

# A kill injected at a chosen point of a chosen checkpoint write (the subprocess kills itself), or
# none (then the test kills it from outside at a random moment).
KILLER = r"""
import os, signal, sys
from pathlib import Path
from dlmkit.hub import checkpoint as ckpt

point, target = sys.argv[1], sys.argv[2]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_write, real_publish, real_prune, real_replace = ckpt.write_model_folder, ckpt.publish_folder, ckpt.prune, os.replace

def write_model_folder(folder, *a, **k):  # the model files are in the temporary folder, the state not yet
    real_write(folder, *a, **k)
    if point == "files" and folder.name.startswith(f".{target}."):
        die()

def publish_folder(tmp, final):  # the temporary folder is complete, not yet renamed
    if point == "complete" and final.name == target:
        die()
    real_publish(tmp, final)
    if point == "published" and final.name == target:  # renamed; not yet pruned, nothing logged
        die()

def replace(a, b):  # between the two renames that replace an existing folder
    real_replace(a, b)
    if point == "swap" and Path(b).name == f".{target}.old":
        die()

ckpt.write_model_folder, ckpt.publish_folder, os.replace = write_model_folder, publish_folder, replace
from dlmkit.cli import main
sys.exit(main(sys.argv[3:]))
"""

LM = ("train.steps=16", "train.save_every=4", "train.eval_every=4", "train.keep_last=2", "model.dropout=0.1", "train.ema=0.9")


def _killed(argv: list[str], point: str | None, target: str, watch: Path, rng: random.Random) -> None:
    """Run ``dlm ARGV`` in a subprocess until it dies at ``point`` of writing ``target``, or (point None)
    kill it at a random moment after it has logged something."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", KILLER, point or "-", target, *argv, "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if point is None:
        deadline = time.time() + 120
        while not watch.is_file() and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"it was not killed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}"


def _same_run(ref: Path, got: Path, last: str) -> None:
    for name in ("model.safetensors", "train_state.safetensors"):
        a = load_file(str(ref / "checkpoints" / last / name))
        b = load_file(str(got / "checkpoints" / last / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert untimed(ref) == untimed(got)
    assert [p.name for p in (got / "checkpoints").iterdir() if p.name.startswith(".")] == []


def _recipe(name: str, tmp_path: Path, corpus: Path, TINY: list[str]) -> tuple[list[str], list[str], object, Path]:
    """(first command, resume command, in-process reference, run folder) of one recipe."""
    out = tmp_path / name
    if name == "diffuseq":
        cfg = _diffuseq_cfg(tmp_path, name, "train.steps=16", "train.save_every=4", "train.eval_every=4", "train.keep_last=2")
        (tmp_path / "dq.yaml").write_text(dump_yaml(cfg))
        ref = _diffuseq_cfg(tmp_path, "ref", "train.steps=16", "train.save_every=4", "train.eval_every=4", "train.keep_last=2")
        return ["train", str(tmp_path / "dq.yaml")], ["train", "--resume", str(out)], lambda: train(ref, progress=False), Path(ref.out_dir)
    if name == "tcs":
        teacher = tmp_path / "teacher"
        train(load_config("tiny", [*TINY, f"data.train={corpus}", f"out_dir={teacher}", "train.steps=2"]), progress=False)
        from dlmkit.recipes.tcs import distill_tcs

        args = ["--teacher", str(teacher), "--student", "tiny", "--data", str(corpus), "--top-k", "2", *TINY, *LM]
        ref = tmp_path / "ref"
        run_ref = lambda: distill_tcs(teacher=str(teacher), student="tiny", data=[str(corpus)], out_dir=str(ref), top_k=2,  # noqa: E731
                                      overrides=[*TINY, *LM], progress=False)
        return ["distill", "tcs", *args, "--out", str(out)], ["distill", "tcs", "--resume", str(out)], run_ref, ref
    cfg = load_config("tiny", [*TINY, f"data.train={corpus}", f"out_dir={out}", f"model.kind={name}", *LM])
    (tmp_path / "run.yaml").write_text(dump_yaml(cfg))
    ref = load_config("tiny", [*TINY, f"data.train={corpus}", f"out_dir={tmp_path / 'ref'}", f"model.kind={name}", *LM])
    return ["train", str(tmp_path / "run.yaml")], ["train", "--resume", str(out)], lambda: train(ref, progress=False), Path(ref.out_dir)


# one kill inside a checkpoint write per recipe (each point at least once), then the resume finishes
FAST = [("ar", "files", "step_0000008"), ("mdlm", "complete", "step_0000008"), ("sedd_absorb", "published", "step_0000004"),
        ("sedd_uniform", "swap", "best"), ("diffuseq", "complete", "step_0000012"), ("tcs", "files", "step_0000008")]


@pytest.mark.parametrize("recipe,point,target", FAST)
def test_killed_inside_a_checkpoint_write_then_resumed_is_bitwise_identical(recipe, point, target, tmp_path, corpus, tiny_overrides, one_thread):
    first, again, run_ref, ref = _recipe(recipe, tmp_path, corpus, tiny_overrides)
    run_ref()
    run = tmp_path / recipe
    _killed(first, point, target, run / "metrics.jsonl", random.Random(0))
    assert not (run / "checkpoints" / "step_0000016").exists()
    assert main([*again, "--no-progress"]) == 0  # the resume, in this process
    _same_run(ref, run, "step_0000016")


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["ar", "mdlm", "sedd_absorb", "sedd_uniform", "diffuseq", "tcs"])
def test_many_kills_at_random_points_then_resumed_is_bitwise_identical(recipe, tmp_path, corpus, tiny_overrides, one_thread):
    """Five kills per recipe, each at a random moment of training or a random point of a checkpoint
    write still to come, each followed by a resume (the next launch); then the run is finished."""
    rng = random.Random(f"{recipe}-15")
    first, again, run_ref, ref = _recipe(recipe, tmp_path, corpus, tiny_overrides)
    run_ref()
    run = tmp_path / recipe
    env = dict(os.environ, OMP_NUM_THREADS="1")
    kills = []
    for _ in range(5):
        steps = ckpt.step_folders(run)
        done = int(steps[0].name[5:]) if steps else 0
        future = [f"step_{s:07d}" for s in (4, 8, 12) if s > done]
        point = rng.choice([None, None, "files", "complete", "published", "swap"] if future else [None])
        target = "best" if point == "swap" else rng.choice(future or ["-"])
        argv = again if ckpt.step_folders(run) else first  # a run killed before its first checkpoint starts over
        lines = len(records(run)) if (run / "metrics.jsonl").is_file() else 0
        proc = subprocess.Popen([sys.executable, "-c", KILLER, point or "-", target, *argv, "--no-progress"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        if point is None:  # once it has trained a step more, at a random moment
            deadline = time.time() + 120
            while proc.poll() is None and time.time() < deadline:
                if (run / "metrics.jsonl").is_file() and len((run / "metrics.jsonl").read_text().split("\n")) - 1 > lines:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()[-2000:]
        if proc.returncode == 0:
            break
        kills.append(point or "moment")
    assert len(kills) >= 3, kills
    if not (run / "checkpoints" / "step_0000016").exists():
        assert main([*(again if ckpt.step_folders(run) else first), "--no-progress"]) == 0
    _same_run(ref, run, "step_0000016")


def test_a_fresh_start_over_a_run_killed_before_its_first_checkpoint_resets_the_log(tiny_cfg, capsys):
    cfg = tiny_cfg("run", "train.steps=3", "train.save_every=0")
    train(cfg, progress=False)
    run = Path(cfg.out_dir)
    want = untimed(run)
    shutil.rmtree(run / "checkpoints")
    train(tiny_cfg("run", "train.steps=3", "train.save_every=0"), progress=False)  # the same command again, no --resume
    assert "starting over" in capsys.readouterr().err
    assert untimed(run) == want
