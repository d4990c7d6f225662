"""TensorBoard / W&B loggers beside metrics.jsonl, and `dlm plot` of one or several runs."""

import json
import sys
from pathlib import Path

import pytest
from readme_packages import require  # README-installed: fail, never skip

from dlmkit.cli import main
from dlmkit.errors import DlmError
from dlmkit.recipes.pretrain import train


def _records(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_and_offline_wandb_get_the_metrics(tiny_cfg, monkeypatch):
    require("tensorboard")
    require("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = tiny_cfg("run", "train.steps=4", "train.log_every=2", "train.eval_every=4", "train.save_every=2",
                   "train.loggers=[jsonl,tensorboard,wandb]")
    train(cfg, progress=False)
    run = Path(cfg.out_dir)
    want = {r["step"]: r for r in _records(run)}
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/lr", "train/tokens_per_s", "val/loss"} <= set(acc.Tags()["scalars"])
    got = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert got == pytest.approx({s: r["loss"] for s, r in want.items() if "loss" in r}, rel=1e-6)
    assert [e.value for e in acc.Scalars("val/loss")] == pytest.approx([want[4]["val_loss"]], rel=1e-6)
    run_id = (run / "wandb" / "dlmkit_run_id").read_text().strip()
    offline = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 1 and (offline[0] / f"run-{run_id}.wandb").stat().st_size > 0  # offline: nothing sent

    cfg.train.steps = 6  # a resumed run continues the same W&B run and TensorBoard curve
    train(cfg, resume=True, progress=False)
    assert (run / "wandb" / "dlmkit_run_id").read_text().strip() == run_id
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert sorted(e.step for e in acc.Scalars("train/loss")) == [2, 4, 6]


def test_logger_errors_are_one_line(tiny_cfg, monkeypatch):
    with pytest.raises(DlmError, match="unknown logger.*'mlflow'"):
        train(tiny_cfg("a", "train.loggers=[jsonl,mlflow]"), progress=False)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(DlmError, match=r"wandb package is not installed: pip install 'dlmkit\[loggers\]'"):
        train(tiny_cfg("b", "train.loggers=[wandb]"), progress=False)


def test_dlm_plot_draws_several_runs(tiny_cfg, tmp_path, capsys):
    runs = []
    for kind in ("ar", "mdlm"):
        cfg = tiny_cfg(kind, f"model.kind={kind}", "train.steps=4", "train.eval_every=2")
        train(cfg, progress=False)
        runs.append(cfg.out_dir)
    out = tmp_path / "curves.png"
    capsys.readouterr()
    assert main(["plot", *runs, "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and res["points"] == {"loss": 8, "val_loss": 4}
    assert main(["plot", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: ") and out.is_file()


def test_log_ticks_are_plain_numbers():
    from dlmkit.plotting import plain_number, pyplot, readable_log_ticks

    assert [plain_number(v) for v in (2.0, 0.05, 1000.0, 1e-5, 3e7)] == ["2", "0.05", "1,000", "1e-5", "3e7"]
    plt = pyplot()
    for lo, hi in ((1.5, 3.2), (0.8, 40.0), (1.0, 1024.0)):
        fig, ax = plt.subplots()
        ax.plot([1, 2], [lo, hi])
        ax.set_yscale("log")
        readable_log_ticks(ax, "y")
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
        assert labels and not any("10^" in t or "times" in t or "$" in t for t in labels), labels
        plt.close(fig)


def test_latency_plot_ticks_are_plain(tmp_path, monkeypatch):
    """The latency figure once read '2x10^0' on its axes."""
    from dlmkit.eval.tasks import latency
    from dlmkit.plotting import pyplot

    plt = pyplot()
    seen = {}
    close = plt.close

    def spy(fig):
        fig.canvas.draw()
        ax = fig.axes[0]
        seen["labels"] = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
        close(fig)

    monkeypatch.setattr(plt, "close", spy)
    rows = [{"length": 64, "batch": 1, "steps": s, "kind": "mdlm", "seconds_per_sequence": 0.9 + 0.3 * s} for s in (1, 2, 4)]
    rows.append({"length": 64, "batch": 1, "steps": None, "kind": "ar", "seconds_per_sequence": 2.5})
    latency.plot_latency({"rows": rows, "device_name": "cpu"}, str(tmp_path / "lat.png"))
    assert "2" in seen["labels"] and not any("10^" in t or "times" in t or "$" in t for t in seen["labels"]), seen["labels"]
