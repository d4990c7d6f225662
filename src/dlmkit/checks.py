"""Checks of user input made before any work starts: value ranges (config keys, command-line
options) and output paths. Each failure is a :class:`DlmError` (or, for an option, an argparse
error) that names the key, option or path, the value and what is allowed."""

from __future__ import annotations

import argparse
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dlmkit.errors import DlmError


@dataclass(frozen=True)
class Range:
    """An interval of allowed numbers; ``None`` ends are unbounded; ``*_open`` excludes the end."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return not (self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)))

    def describe(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}" if self.lo is not None else "a number"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


POSITIVE = Range(1)  # integers: 1, 2, ...
NON_NEGATIVE = Range(0)
POSITIVE_REAL = Range(0, lo_open=True)
UNIT_OPEN_LOW = Range(0, 1, lo_open=True)  # (0, 1]: top-p, a fraction of the items
FRACTION = Range(0, 1)  # [0, 1]
DECAY = Range(0, 1, hi_open=True)  # [0, 1): EMA decays, Adam betas, dropout, held-out shares

# Allowed values of the numeric keys of a run config (dlmkit.engine.config); unlisted keys are free.
CONFIG_RANGES: dict[str, Range] = {
    "model.n_layers": POSITIVE, "model.d_model": POSITIVE, "model.n_heads": POSITIVE, "model.d_cond": POSITIVE,
    "model.mlp_ratio": POSITIVE, "model.dropout": DECAY, "model.seq_len": Range(2),
    "tokenizer.vocab_size": Range(8),
    "data.valid_fraction": DECAY, "data.max_src_len": NON_NEGATIVE, "data.max_trg_len": NON_NEGATIVE,
    "diffusion.eps": Range(0, 1, lo_open=True, hi_open=True), "diffusion.sigma_min": POSITIVE_REAL,
    "diffusion.sigma_max": POSITIVE_REAL, "diffusion.clean_fraction": DECAY,
    "diffusion.block_size": POSITIVE, "diffusion.clip_min": UNIT_OPEN_LOW, "diffusion.clip_max": UNIT_OPEN_LOW,
    "diffusion.continuous.emb_dim": POSITIVE, "diffusion.continuous.timesteps": Range(2),
    "diffusion.continuous.x0_std": NON_NEGATIVE, "diffusion.continuous.anchor_weight": NON_NEGATIVE,
    "diffusion.continuous.emb_init_std": POSITIVE_REAL, "diffusion.continuous.eta": NON_NEGATIVE,
    "diffusion.continuous.clamp_step": NON_NEGATIVE,
    "train.steps": POSITIVE, "train.batch_size": POSITIVE, "train.micro_batch": NON_NEGATIVE, "train.lr": NON_NEGATIVE,
    "train.min_lr_ratio": FRACTION, "train.warmup": NON_NEGATIVE, "train.weight_decay": NON_NEGATIVE,
    "train.beta1": DECAY, "train.beta2": DECAY, "train.grad_clip": NON_NEGATIVE, "train.ema": DECAY,
    "train.eval_every": NON_NEGATIVE, "train.eval_blocks": POSITIVE, "train.save_every": NON_NEGATIVE,
    "train.keep_last": POSITIVE, "train.log_every": POSITIVE, "train.sample_every": NON_NEGATIVE,
    "train.sample_steps": POSITIVE,
    "distill.tcs.top_k": POSITIVE, "distill.tcs.alpha": FRACTION, "distill.tcs.teacher_batch": POSITIVE,
    "seed": NON_NEGATIVE,
}

# Closed sets of the string keys that a run could otherwise accept silently (e.g. a schedule that is
# read only after the warm-up, a strategy read only under torchrun); the others fail at once.
CONFIG_CHOICES: dict[str, tuple[str, ...]] = {
    "train.schedule": ("cosine", "constant"), "train.distributed": ("ddp", "fsdp"), "train.precision": ("auto", "fp32", "bf16"),
    "data.format": ("", "lm", "seq2seq"),
}


def check_value(name: str, value: Any, allowed: Range) -> None:
    """A :class:`DlmError` naming ``name`` unless ``value`` (a number, or None) is in ``allowed``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value not in allowed:
        raise DlmError(f"{name}={value} is out of range: it must be {allowed.describe()}")


def check_config_value(name: str, value: Any) -> None:
    """Range check of one dotted config key (see :data:`CONFIG_RANGES` and :data:`CONFIG_CHOICES`)."""
    if name in CONFIG_RANGES:
        check_value(name, value, CONFIG_RANGES[name])
    if name in CONFIG_CHOICES and value not in CONFIG_CHOICES[name]:
        raise DlmError(f"{name}={value} is not one of {', '.join(CONFIG_CHOICES[name])}")


def check_config(cfg: Any) -> None:
    """Checks of a whole run config that involve several keys (each key's range is checked when set)."""
    m, t, d = cfg.model, cfg.train, cfg.diffusion
    if m.n_heads > 0 and m.d_model % m.n_heads:
        raise DlmError(f"model.d_model={m.d_model} is not divisible by model.n_heads={m.n_heads}: "
                       "each head gets d_model / n_heads dimensions")
    if t.micro_batch and t.micro_batch > t.batch_size:
        raise DlmError(f"train.micro_batch={t.micro_batch} exceeds train.batch_size={t.batch_size}")
    if d.sigma_max <= d.sigma_min:
        raise DlmError(f"diffusion.sigma_max={d.sigma_max} must exceed diffusion.sigma_min={d.sigma_min}")
    if d.clip_max <= d.clip_min:
        raise DlmError(f"diffusion.clip_max={d.clip_max} must exceed diffusion.clip_min={d.clip_min}")
    if m.kind == "bd3lm" and m.seq_len % d.block_size:
        raise DlmError(f"diffusion.block_size={d.block_size} must divide model.seq_len={m.seq_len}")


# ---- command-line options -----------------------------------------------------------------------


def number(allowed: Range, kind: type = int) -> Callable[[str], Any]:
    """An argparse ``type``: an int (or float) in ``allowed``."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"must be {allowed.describe()}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def int_list(allowed: Range) -> Callable[[str], str]:
    """An argparse ``type``: comma-separated integers in ``allowed`` (the text is kept as given)."""
    one = number(allowed)

    def parse(text: str) -> str:
        items = [v for v in text.split(",") if v.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers")
        for item in items:
            one(item.strip())
        return text

    return parse


def int_or_word(allowed: Range, word: str) -> Callable[[str], str]:
    """An argparse ``type``: ``word`` or an integer in ``allowed`` (the text is kept as given)."""
    one = number(allowed)

    def parse(text: str) -> str:
        if text != word:
            try:
                one(text)
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentTypeError(f"give '{word}' or an integer {allowed.describe()}, got {text}") from e
        return text

    return parse


def count_or_fraction(text: str) -> str:
    """An argparse ``type``: an integer >= 1 or, with a dot, a fraction in (0, 1] (kept as text)."""
    try:
        ok = float(text) in UNIT_OPEN_LOW if "." in text else int(text) >= 1
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"give an integer >= 1 or a fraction in (0, 1] with a dot, got {text}")
    return text


def device(text: str) -> str:
    """An argparse ``type``: a torch device that exists here (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a device (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: no such CUDA device here ({torch.cuda.device_count()} visible)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text}: dlmkit runs on cpu, cuda or mps")
    return text


# ---- output paths -------------------------------------------------------------------------------


def check_output(path: str | Path, what: str, *, folder: bool = False) -> None:
    """Fail now, before any work, unless ``path`` (a file, or with ``folder`` a folder) can be
    written: an existing one must be of the right type, and the nearest existing folder on its way
    must take a new file. Missing folders are fine: the writers create them."""
    p = Path(path)
    if p.exists() and p.is_dir() != folder:
        raise DlmError(f"{what} {path}: is a {'file' if folder else 'folder'}; give a {'folder' if folder else 'file'} path")
    base = p if folder else p.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise DlmError(f"{what} {path}: {base} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        raise DlmError(f"{what} {path}: cannot write in {base} ({e.strerror}); choose a writable folder") from None
