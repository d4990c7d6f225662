"""Overrides are plain key=value: Hydra's +key, ~key and ${...} interpolation are one-line errors,
never a folder literally named '${model.kind}'."""

import pytest

from dlmkit.cli import main
from dlmkit.engine.config import load_config
from dlmkit.errors import DlmError


@pytest.mark.parametrize("item, match", [
    ("out_dir=runs/${model.kind}", "interpolation is not supported"),
    ("data.train=${oc.env:HOME}/x", "interpolation is not supported"),
    ("+train.new_key=1", r"\+key / ~key are not supported"),
    ("++train.steps=3", r"\+key / ~key are not supported"),
    ("~train.ema", r"\+key / ~key are not supported"),
])
def test_hydra_syntax_is_rejected(item, match):
    with pytest.raises(DlmError, match=match):
        load_config("tiny", [item])


def test_interpolation_in_a_yaml_file_is_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  kind: mdlm\nout_dir: runs/${model.kind}\n")
    with pytest.raises(DlmError, match="'out_dir'.*interpolation"):
        load_config(str(path))


def test_cli_prints_one_line_and_makes_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "tiny", "out_dir=runs/${model.kind}", "train.steps=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: config key 'out_dir'")
    assert not (tmp_path / "runs").exists()
    assert main(["train", "tiny", "+seed=3"]) == 2
    assert "not supported" in capsys.readouterr().err


def test_plain_values_with_dollars_and_plus_still_work():
    cfg = load_config("tiny", ["out_dir=runs/$HOME-like", "train.lr=+1e-3"])
    assert cfg.out_dir == "runs/$HOME-like" and cfg.train.lr == 1e-3
