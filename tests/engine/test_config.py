import pytest

from dlmkit.engine.config import apply_override, dump_yaml, load_config, preset_names
from dlmkit.errors import DlmError


def test_presets_load_and_overrides_apply():
    assert {"tiny", "small", "medium"} <= set(preset_names())
    small = load_config("small")
    assert (small.model.n_layers, small.model.d_model, small.model.n_heads) == (12, 768, 12)
    medium = load_config("medium")
    assert (medium.model.n_layers, medium.model.d_model) == (24, 1024)
    cfg = load_config("tiny", ["train.steps=7", "seed=3", "model.kind=ar", "train.lr=2e-3", "data.train=[a, b]"])
    assert cfg.train.steps == 7 and cfg.seed == 3 and cfg.train.lr == pytest.approx(2e-3)
    assert cfg.data.train == ["a", "b"]


def test_yaml_round_trip(tmp_path):
    cfg = load_config("tiny", ["train.steps=11"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(str(path)) == cfg


@pytest.mark.parametrize(
    "override, named",
    [
        ("train.stepz=3", "train.stepz"),
        ("modle.kind=ar", "modle"),
        ("train.steps=abc", "train.steps"),
        ("train.steps=1.5", "train.steps"),
        ("train.compile=3", "train.compile"),
        ("train=3", "train"),
    ],
)
def test_bad_overrides_name_the_key(override, named):
    with pytest.raises(DlmError, match=named.replace(".", r"\.")):
        load_config("tiny", [override])


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  n_layer: 3\n")
    with pytest.raises(DlmError, match="model.n_layer"):
        load_config(str(path))


def test_missing_config_and_malformed_override():
    with pytest.raises(DlmError, match="no config"):
        load_config("nonexistent-preset")
    cfg = load_config("tiny")
    with pytest.raises(DlmError, match="key=value"):
        apply_override(cfg, "train.steps")
