"""Metric loggers beside ``metrics.jsonl``: TensorBoard and Weights & Biases, both optional.

``train.loggers=[jsonl,tensorboard,wandb]`` chooses them. ``jsonl`` is the run's own record
(``metrics.jsonl``, read by resume and ``dlm plot``) and is always written; the others receive
the same records on rank 0:

* ``tensorboard``: event files in ``RUN/tensorboard`` (``tensorboard --logdir RUN``); on resume
  the events after the resumed step are purged, as ``metrics.jsonl`` is truncated.
* ``wandb``: a W&B run in ``RUN/wandb``, offline by default (``train.wandb_mode=offline``: no
  network; ``wandb sync RUN/wandb/offline-run-*`` uploads it later) or ``online``; project
  ``train.wandb_project``. A resumed dlmkit run continues the same W&B run (its id is kept in
  ``RUN/wandb/dlmkit_run_id``).

Tags: ``train/<metric>`` for training metrics and ``val/<metric>`` for ``val_*`` ones.
Each package is needed only when its logger is chosen: ``pip install 'dlmkit[loggers]'``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Protocol, Sequence

from dlmkit.engine.config import to_dict
from dlmkit.errors import DlmError

LOGGERS = ("jsonl", "tensorboard", "wandb")
INSTALL = "pip install 'dlmkit[loggers]'"


def _tag(key: str) -> str:
    return f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {_tag(k): float(v) for k, v in record.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Sink(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class TensorBoardSink:
    """Scalars to TensorBoard event files under ``RUN/tensorboard``."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise DlmError(f"train.loggers has 'tensorboard' but the tensorboard package is not installed: {INSTALL}") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=None if resume_step is None else resume_step + 1)

    def log(self, record: dict[str, Any]) -> None:
        for tag, value in _scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """A Weights & Biases run under ``RUN/wandb`` (offline unless ``train.wandb_mode=online``)."""

    def __init__(self, run_dir: Path, config: dict[str, Any], project: str, mode: str):
        if mode not in ("offline", "online", "disabled"):
            raise DlmError(f"train.wandb_mode must be offline, online or disabled, not {mode!r}")
        try:
            import wandb
        except ImportError:
            raise DlmError(f"train.loggers has 'wandb' but the wandb package is not installed: {INSTALL}") from None
        folder = run_dir / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / "dlmkit_run_id"
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id + "\n", encoding="utf-8")
        self.run = wandb.init(project=project, dir=str(run_dir), name=run_dir.name, id=run_id, resume="allow", mode=mode,
                              config=config, settings=wandb.Settings(silent=True, console="off"))

    def log(self, record: dict[str, Any]) -> None:
        self.run.log(_scalars(record), step=int(record["step"]))

    def close(self) -> None:
        self.run.finish()


class MetricLoggers:
    """The chosen sinks, fed every ``metrics.jsonl`` record (rank 0 only; empty elsewhere)."""

    def __init__(self, sinks: Sequence[Sink] = ()):
        self.sinks = list(sinks)

    def log(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.log(record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []


def check_loggers(names: Sequence[str]) -> None:
    """Unknown logger names are an error naming the known ones."""
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise DlmError(f"train.loggers: unknown logger(s) {', '.join(map(repr, unknown))} (known: {', '.join(LOGGERS)})")


def open_loggers(names: Sequence[str], run_dir: Path, config: dict[str, Any], *, project: str = "dlmkit", wandb_mode: str = "offline",
                 resume_step: int | None = None) -> MetricLoggers:
    """The sinks named in ``names`` besides ``jsonl`` (which the loop writes itself)."""
    check_loggers(names)
    sinks: list[Sink] = []
    try:
        if "tensorboard" in names:
            sinks.append(TensorBoardSink(run_dir, resume_step))
        if "wandb" in names:
            sinks.append(WandbSink(run_dir, config, project, wandb_mode))
    except BaseException:
        MetricLoggers(sinks).close()
        raise
    return MetricLoggers(sinks)


def open_run_loggers(cfg: Any, run_dir: Path, step: int, is_main: bool) -> MetricLoggers:
    """The loggers ``cfg.train.loggers`` asks for, for a run at ``step`` (0: a new run); none off rank 0."""
    t = cfg.train
    check_loggers(t.loggers)
    if not is_main:
        return MetricLoggers()
    return open_loggers(t.loggers, run_dir, to_dict(cfg), project=t.wandb_project, wandb_mode=t.wandb_mode,
                        resume_step=step if step > 0 else None)
