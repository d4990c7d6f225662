"""The error boundary of `dlm`: every subcommand, fed bad input, answers with one line on standard
error (``error: ...``), no traceback and a non-zero status, before doing any work; an unexpected
exception is one line that points to ``--debug``, which shows the traceback."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from safetensors import SafetensorError

from dlmkit.cli import main

# (argv with {FILE}: an existing text file, {BIN}: a binary one, {RO}: a folder that cannot be written, {RUN}: a trained
# run, {DIR}: an empty folder; a piece of the expected message)
CASES = [
    # train: config values, output folders
    (["train", "tiny", "train.batch_size=0"], "train.batch_size=0"),
    (["train", "tiny", "model.d_model=30"], "not divisible by model.n_heads"),
    (["train", "tiny", "train.lr=-1"], "train.lr=-1"),
    (["train", "tiny", "train.steps=0"], "train.steps=0"),
    (["train", "tiny", "train.steps=-5"], "train.steps=-5"),
    (["train", "tiny", "model.dropout=1.5"], "model.dropout=1.5"),
    (["train", "tiny", "train.ema=1"], "train.ema=1"),
    (["train", "tiny", "train.schedule=linear"], "train.schedule=linear"),
    (["train", "tiny", "train.distributed=mpi"], "train.distributed=mpi"),
    (["train", "tiny", "train.stepz=3"], "unknown config key"),
    (["train", "tiny", "train.steps=many"], "wrong type"),
    (["train", "no_such.yaml"], "no config"),
    (["train", "tiny", "out_dir={FILE}/run"], "is a file, not a folder"),
    (["train", "tiny", "out_dir={RO}/run"], "cannot write"),
    (["train", "--resume", "{DIR}"], "not a dlmkit run folder"),
    (["train", "--resume", "{RUN}", "train.steps=0"], "train.steps=0"),
    # sample
    (["sample", "{RUN}", "--length", "-3"], "--length"),
    (["sample", "{RUN}", "--length", "0"], "--length"),
    (["sample", "{RUN}", "--length", "abc"], "not an integer"),
    (["sample", "{RUN}", "--batch-size", "0"], "--batch-size"),
    (["sample", "{RUN}", "--top-p", "1.5"], "(0, 1]"),
    (["sample", "{RUN}", "--top-p", "0"], "(0, 1]"),
    (["sample", "{RUN}", "--temperature", "-1"], "--temperature"),
    (["sample", "{RUN}", "--temperature", "0"], "--temperature"),
    (["sample", "{RUN}", "--temperature", "nan"], "--temperature"),
    (["sample", "{RUN}", "--n", "0"], "--n"),
    (["sample", "{RUN}", "--steps", "0"], "--steps"),
    (["sample", "{RUN}", "--top-k", "0"], "--top-k"),
    (["sample", "{RUN}", "--seed", "-1"], "--seed"),
    (["sample", "{RUN}", "--candidates", "0"], "--candidates"),
    (["sample", "{RUN}", "--candidates", "2"], "--src-file"),
    (["sample", "{RUN}", "--out", "{RO}/s.txt"], "cannot write"),
    (["sample", "{RUN}", "--out", "{FILE}/s.txt"], "is a file, not a folder"),
    (["sample", "{RUN}", "--out", "{DIR}"], "is a folder"),
    (["sample", "{DIR}/missing"], "no such model"),
    (["sample", "{RUN}", "--device", "banana"], "not a device"),
    (["sample", "{RUN}", "--device", "cuda:99"], "no such CUDA device"),
    (["sample", "{RUN}", "--infill", "x:y"], "POSITION:TEXT"),
    # eval ppl (and the `dlm eval RUN` short form), eval seq2seq
    (["eval", "ppl", "{RUN}", "--data", "{FILE}", "--batch-size", "0"], "--batch-size"),
    (["eval", "{RUN}", "--data", "{FILE}", "--max-sequences", "0"], "--max-sequences"),
    (["eval", "ppl", "{RUN}", "--data", "{FILE}", "--n-samples", "0"], "--n-samples"),
    (["eval", "ppl", "{RUN}", "--data", "{FILE}", "--seed", "-2"], "--seed"),
    (["eval", "ppl", "{RUN}", "--data", "{FILE}", "--estimator", "guess"], "--estimator"),
    (["eval", "ppl", "{RUN}"], "--data"),
    (["eval", "seq2seq", "--hyp", "{FILE}", "--ref", "{FILE}", "--bertscore-layers", "-1"], "--bertscore-layers"),
    (["eval", "seq2seq", "--hyp", "{DIR}/none.jsonl", "--ref", "{FILE}"], "none.jsonl"),
    # eval gen / mauve / harness / report
    (["eval", "gen", "{RUN}", "--judge", "smollm2", "--n", "0"], "--n"),
    (["eval", "gen", "{RUN}", "--judge", "smollm2", "--steps", "0,4"], "--steps"),
    (["eval", "gen", "{RUN}", "--judge", "smollm2", "--steps", "a,b"], "--steps"),
    (["eval", "gen", "{RUN}", "--judge", "smollm2", "--length", "0"], "--length"),
    (["eval", "gen", "{RUN}", "--judge", "smollm2", "--judge-batch-size", "0"], "--judge-batch-size"),
    (["eval", "mauve", "{RUN}", "--prompts", "{FILE}", "--prompt-tokens", "0"], "--prompt-tokens"),
    (["eval", "mauve", "{RUN}", "--prompts", "{FILE}", "--num-buckets", "0"], "--num-buckets"),
    (["eval", "mauve", "{RUN}", "--prompts", "{FILE}", "--seeds", "1,x"], "--seeds"),
    (["eval", "mauve", "{RUN}", "--prompts", "{FILE}", "--kmeans-num-redo", "0"], "--kmeans-num-redo"),
    (["eval", "mauve", "{RUN}", "--prompts", "{FILE}", "--n", "0"], "--n"),
    (["eval", "mauve", "{RUN}", "--prompts", "{BIN}", "--judge", "{RUN}", "--prompt-tokens", "4", "--continuation-tokens", "4"],
     "not UTF-8"),
    (["eval", "harness", "{RUN}", "--tasks", "dlm_cloze", "--limit", "0"], "--limit"),
    (["eval", "harness", "{RUN}", "--tasks", "dlm_cloze", "--limit", "1.5"], "--limit"),
    (["eval", "harness", "{RUN}", "--tasks", "dlm_cloze", "--num-fewshot", "-1"], "--num-fewshot"),
    (["eval", "harness", "{RUN}", "--tasks", "dlm_cloze", "--n-samples", "0"], "--n-samples"),
    (["eval", "report", "{FILE}", "--out", "{RO}/r.md"], "cannot write"),
    (["eval", "report", "{DIR}/none.json", "--out", "{DIR}/r.md"], "none.json"),
    (["eval", "report", "{BIN}", "--out", "{DIR}/r.md"], "not a text file"),
    # bench latency
    (["bench", "latency", "{RUN}", "--steps", "1,-2"], "--steps"),
    (["bench", "latency", "{RUN}", "--repeats", "0"], "--repeats"),
    (["bench", "latency", "{RUN}", "--warmup", "-1"], "--warmup"),
    (["bench", "latency", "{RUN}", "--lengths", "0"], "--lengths"),
    (["bench", "latency", "{RUN}", "--batch", "0"], "--batch"),
    (["bench", "latency", "{RUN}", "--max-timed-steps", "0"], "--max-timed-steps"),
    (["bench", "latency", "{RUN}", "--plot", "{RO}/f.png"], "cannot write"),
    (["bench", "latency", "{RUN}", "--device", "tpu"], "not a device"),
    # distill dlm-one / tcs
    (["distill", "dlm-one", "{RUN}", "--out", "{DIR}/d", "--set", "stage1.steps=many"], "'many' is not an integer"),
    (["distill", "dlm-one", "{RUN}", "--out", "{DIR}/d", "--set", "batch_size=0"], "batch_size=0"),
    (["distill", "dlm-one", "{RUN}", "--out", "{DIR}/d", "--set", "stage2.lr_psi=-1"], "stage2.lr_psi=-1"),
    (["distill", "dlm-one", "{RUN}", "--out", "{DIR}/d", "--set", "bogus=1"], "unknown option"),
    (["distill", "dlm-one", "{RUN}", "--out", "{FILE}/d"], "is a file, not a folder"),
    (["distill", "dlm-one", "{RUN}", "--out", "{DIR}/d"], "diffuseq teacher"),
    (["distill", "tcs", "--teacher", "{RUN}", "--student", "tiny", "--top-k", "0"], "--top-k"),
    (["distill", "tcs", "--teacher", "{RUN}", "--student", "tiny", "--alpha", "1.5"], "--alpha"),
    (["distill", "tcs", "--teacher", "{RUN}", "--student", "tiny", "train.steps=0"], "train.steps=0"),
    (["distill", "tcs", "--teacher", "{RUN}", "--student", "tiny", "model.n_heads=3"], "not divisible"),
    (["distill", "tcs", "--teacher", "{RUN}", "--student", "tiny", "--out", "{RO}/t"], "cannot write"),
    # convert, quickstart, the command itself
    (["convert", "{DIR}/none", "{DIR}/c"], "none"),
    (["convert", "{RUN}", "{FILE}/c"], "is a file, not a folder"),
    (["quickstart", "--steps", "0"], "--steps"),
    (["quickstart", "--out", "{FILE}/q"], "is a file, not a folder"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
    (["sample", "{RUN}", "--bogus"], "unrecognized arguments"),
]


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def places(corpus, tmp_path_factory, tiny_overrides) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_input")
    run = root / "run"
    assert main(["train", "tiny", *tiny_overrides, "train.steps=2", f"data.train={corpus}", f"out_dir={run}", "--no-progress"]) == 0
    (root / "fresh").mkdir()
    file = root / "a_file.txt"
    file.write_text("some text\n", encoding="utf-8")
    (root / "binary.dat").write_bytes(bytes(range(128, 256)))
    ro = root / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    if _writable(ro):  # root ignores permission bits: a folder of a read-only file system then
        ro = next((Path(p) for p in ("/sys", "/proc/sys") if Path(p).is_dir() and not _writable(Path(p))), None)
    yield {"FILE": str(file), "BIN": str(root / "binary.dat"), "RO": str(ro) if ro else "", "RUN": str(run), "DIR": str(root / "fresh")}
    (root / "read_only").chmod(0o755)


def _fill(argv: list[str], places: dict[str, str]) -> list[str]:
    if any("{RO}" in a for a in argv) and not places["RO"]:
        pytest.skip("no folder that this user cannot write to")
    out = []
    for a in argv:
        for key, value in places.items():
            a = a.replace("{" + key + "}", value)
        out.append(a)
    return out


def assert_one_line_error(err: str, expect: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert expect in lines[0], err


@pytest.mark.parametrize("argv,expect", CASES, ids=[" ".join(a)[:70] for a, _ in CASES])
def test_bad_input_is_one_line_error(argv, expect, places, capsys, monkeypatch):
    monkeypatch.chdir(places["DIR"].rsplit("/", 1)[0])  # default output folders land in the test's folder
    code = main(_fill(argv, places))
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    assert_one_line_error(err, expect)


def test_the_same_in_a_subprocess(places, tmp_path):
    """The console entry point: exit status 2, one line on stderr, nothing on stdout."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "dlmkit.cli", "sample", places["RUN"], "--top-p", "1.5"],
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_line_error(proc.stderr, "--top-p")


def test_output_paths_are_checked_before_the_work(places, capsys, monkeypatch):
    """A read-only --out / --plot fails at once: the sampler and the timer are never called."""
    if not places["RO"]:
        pytest.skip("no folder that this user cannot write to")

    def never(*args, **kwargs):
        raise AssertionError("the work started before the output path was checked")

    monkeypatch.setattr("dlmkit.generate.text.sample_texts", never)
    monkeypatch.setattr("dlmkit.generate.seq2seq.sample_seq2seq", never)
    monkeypatch.setattr("dlmkit.eval.tasks.latency.latency_benchmark", never)
    for argv in (["sample", places["RUN"], "--out", f"{places['RO']}/x/s.txt"],
                 ["sample", places["RUN"], "--src-file", places["FILE"], "--out", f"{places['RO']}/s.jsonl"],
                 ["bench", "latency", places["RUN"], "--plot", f"{places['RO']}/f.png"]):
        assert main(argv) == 2
        assert_one_line_error(capsys.readouterr().err, "cannot write")


def test_unexpected_exception_is_one_line_and_debug_shows_the_traceback(places, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something broke\nin two lines")

    monkeypatch.setattr("dlmkit.generate.text.sample_texts", broken)
    assert main(["sample", places["RUN"], "--n", "1"]) == 1
    err = capsys.readouterr().err
    assert_one_line_error(err, "RuntimeError: something broke in two lines")
    assert "rerun with --debug for the traceback" in err
    assert main(["sample", places["RUN"], "--n", "1", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "something broke" in err


def test_disk_full_while_writing_a_checkpoint(corpus, tiny_overrides, tmp_path, capsys, monkeypatch):
    """ENOSPC inside the second checkpoint write (as safetensors reports it): one-line error, exit 2,
    the first checkpoint intact and loadable, no temporary folder left behind."""
    import dlmkit.hub.checkpoint as ckpt
    from dlmkit.hub.load import load as load_model

    run = tmp_path / "run"
    first = run / "checkpoints" / "step_0000004"
    real_save = ckpt.save_file

    def save_until_full(tensors, filename, *args, **kwargs):
        if first.is_dir():  # the disk fills up after the first checkpoint: half a file, then the error
            Path(filename).write_bytes(b"\0" * 100)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", save_until_full)
    code = main(["train", "tiny", *tiny_overrides, "train.steps=12", "train.save_every=4", "train.eval_every=100",
                 f"data.train={corpus}", f"out_dir={run}", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert_one_line_error(err.splitlines()[-1] + "\n", "No space left on device")
    assert "Traceback" not in err
    monkeypatch.undo()
    model, _ = load_model(first)
    assert ckpt.step_folders(run) == [first]
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
