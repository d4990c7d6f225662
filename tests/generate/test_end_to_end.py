"""Train through the loop, checkpoints round-trip, and the three commands run end to end."""

import json

import pytest
import torch

from dlmkit.cli import main
from dlmkit.errors import DlmError


def last_json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_loss_decreases_through_the_training_loop(trained_run):
    run, result = trained_run
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert len(losses) >= 4
    assert losses[-1] < 0.8 * losses[0], losses
    assert (run / "samples").is_dir() and "generated:" in next((run / "samples").iterdir()).read_text()
    assert json.loads((run / "seq2seq_data.json").read_text())["n_valid_rows"] > 0


def test_checkpoint_round_trip(trained_run):
    from dlmkit.hub.load import load as load_model

    run, _ = trained_run
    model, tok = load_model(run)
    again, _ = load_model(run)
    assert model.kind == "diffuseq" and model.method.T == 200
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    rows = torch.full((2, model.seq_len), tok.pad_id)
    rows[:, :3] = torch.tensor(tok.encode("how do i")[:3] + [0] * (3 - len(tok.encode("how do i")[:3])))
    rows[:, 3] = tok.sep_id
    outs = [m.method.sample(m.net, 2, m.seq_len, steps=5, generator=torch.Generator().manual_seed(0), condition=rows).tokens for m in (model, again)]
    assert torch.equal(*outs)


def test_cli_train_sample_eval(tmp_path, pair_file, trained_run, tiny_args, capsys):
    out = tmp_path / "cli_run"
    assert main(["train", "diffuseq-tiny", *tiny_args, f"data.train={pair_file}", f"out_dir={out}", "train.steps=3", "--no-progress", "--json"]) == 0
    assert last_json(capsys)["steps"] == 3

    run, _ = trained_run
    hyp = tmp_path / "out.jsonl"
    assert main(["sample", str(run), "--src-file", str(pair_file), "--steps", "5", "--candidates", "3", "--mbr", "--out", str(hyp), "--json"]) == 0
    res = last_json(capsys)
    assert res["n_sources"] == 24 and res["candidates_per_source"] == 3 and res["nfe"] == 5
    rows = [json.loads(line) for line in hyp.read_text().splitlines()]
    assert set(rows[0]) == {"source", "recover", "reference", "candidates"} and len(rows[0]["candidates"]) == 3

    assert main(["eval", "seq2seq", "--hyp", str(hyp), "--json"]) == 0
    m = last_json(capsys)
    assert m["n"] == 24 and 0 <= m["bleu"] <= 1 and "self_bleu" in m and "div4" in m and "rouge_l" in m
    assert main(["eval", "seq2seq", "--hyp", str(hyp), "--mbr", "--ref", str(pair_file), "--json"]) == 0
    assert last_json(capsys)["mbr"] is True

    # plain text: one source a line in, one output a line out; multi-reference evaluation
    src = tmp_path / "src.txt"
    src.write_text("how do i cook rice\nwhy is the sky blue\n")
    txt = tmp_path / "out.txt"
    assert main(["sample", str(run), "--src-file", str(src), "--steps", "3", "--out", str(txt), "--json"]) == 0
    assert len(txt.read_text().splitlines()) == 2
    capsys.readouterr()
    r1, r2 = tmp_path / "r1.txt", tmp_path / "r2.txt"
    r1.write_text("how to cook rice\nwhat makes the sky blue\n")
    r2.write_text("best way to cook rice\nsky blue why\n")
    assert main(["eval", "seq2seq", "--hyp", str(txt), "--ref", str(r1), str(r2), "--src", str(src), "--json"]) == 0
    assert "multi_ref_bleu" in last_json(capsys)


@pytest.mark.parametrize("case", ["missing", "empty", "mismatch", "no_refs"])
def test_cli_bad_input_is_one_line(tmp_path, capsys, case):
    hyp = tmp_path / "h.txt"
    ref = tmp_path / "r.txt"
    hyp.write_text("a b c\nd e f\n")
    ref.write_text("a b c\n")
    argv = {
        "missing": ["eval", "seq2seq", "--hyp", str(tmp_path / "nope.txt"), "--ref", str(ref)],
        "empty": ["eval", "seq2seq", "--hyp", str(hyp), "--ref", str(tmp_path / "e.txt")],
        "mismatch": ["eval", "seq2seq", "--hyp", str(hyp), "--ref", str(ref)],
        "no_refs": ["eval", "seq2seq", "--hyp", str(hyp)],
    }[case]
    (tmp_path / "e.txt").write_text("")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_sample_bad_source_file(trained_run, tmp_path, capsys):
    run, _ = trained_run
    assert main(["sample", str(run), "--src-file", str(tmp_path / "nope.jsonl")]) == 2
    (tmp_path / "empty.txt").write_text("\n")
    assert main(["sample", str(run), "--src-file", str(tmp_path / "empty.txt")]) == 2
    assert main(["sample", str(run), "--candidates", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("error: ") for e in err)


def test_ar_baseline_generates_after_the_source(tmp_path):
    """The AR path of the seq2seq API: prompt eos+src+sep, generation stops at eos."""
    from dlmkit.data.tokenizer import train_bpe
    from dlmkit.methods.base import Specials
    from dlmkit.hub.model import DlmModel
    from dlmkit.networks.transformer import BackboneConfig
    from dlmkit.generate.seq2seq import generate_targets

    tok = train_bpe(["how do i cook rice", "why is the sky blue"], 280)
    sp = Specials(eos=tok.eos_id, pad=tok.pad_id, mask=tok.mask_id, sep=tok.sep_id)
    model = DlmModel.build("ar", BackboneConfig(vocab_size=tok.vocab_size, n_layers=1, d_model=32, n_heads=2, seq_len=20), sp).eval()
    res = generate_targets(model, tok, ["how do i cook rice", "why", "why is"], candidates=2, seed=0)
    assert [len(c) for c in res["candidates"]] == [2, 2, 2]
    with pytest.raises(DlmError):
        generate_targets(model, tok, ["why"], options={"sampler": "ddim"})
