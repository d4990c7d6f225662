"""Seq2seq training rows for the ``seq2seq`` kinds (DiffuSeq): ``[src, sep, trg, eos, pad...]``.

Every pair becomes one row of exactly ``seq_len`` ids:

    src tokens | sep | trg tokens | eos | pad ... pad
                       \\_________ target region _________/

The target region is everything after the *first* ``sep`` (the tokenizer never produces
special ids from text, so that ``sep`` is always the framing one). DiffuSeq noises the padding
too and learns to predict it, so the padding belongs to the target.

Length rule (the same at training and at sampling time, see :func:`source_cap`):
the source is cut to ``max_src_len`` tokens (default ``(seq_len - 2) // 2``), then the target
to ``min(max_trg_len or inf, seq_len - 2 - len(source))``. Every cut is counted and printed,
and the counts are kept on the blocks (``.stats``) and written next to the run.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dlmkit.data.seq2seq import load_pairs
from dlmkit.errors import DlmError
from dlmkit.io import write_json


@dataclass
class FramingStats:
    """How many pairs were framed, and how many lost tokens to fit (counted, not hidden)."""

    n_pairs: int = 0
    n_src_truncated: int = 0
    n_trg_truncated: int = 0
    src_tokens_cut: int = 0
    trg_tokens_cut: int = 0
    mean_src_len: float = 0.0  # after cutting
    mean_trg_len: float = 0.0
    seq_len: int = 0
    max_src_len: int = 0
    source_files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.n_pairs} pairs framed into rows of {self.seq_len} tokens (source cap {self.max_src_len}): "
            f"{self.n_src_truncated} sources truncated ({self.src_tokens_cut} tokens cut), "
            f"{self.n_trg_truncated} targets truncated ({self.trg_tokens_cut} tokens cut); "
            f"mean lengths src {self.mean_src_len:.1f}, trg {self.mean_trg_len:.1f}"
        )


def source_cap(seq_len: int, max_src_len: int = 0) -> int:
    """Most source tokens a row holds: ``max_src_len`` or ``(seq_len - 2) // 2``; at least one
    target position must remain after the sep."""
    if seq_len < 4:
        raise DlmError(f"seq2seq rows need seq_len >= 4, got {seq_len}")
    cap = max_src_len if max_src_len > 0 else (seq_len - 2) // 2
    if cap > seq_len - 3:
        raise DlmError(f"data.max_src_len={max_src_len} leaves no room for a target in rows of {seq_len} tokens "
                       f"(at most {seq_len - 3})")
    return cap


def frame_rows(
    src_ids: Sequence[Sequence[int]],
    trg_ids: Sequence[Sequence[int]] | None,
    *,
    seq_len: int,
    sep: int,
    eos: int,
    pad: int,
    max_src_len: int = 0,
    max_trg_len: int = 0,
) -> tuple[np.ndarray, FramingStats]:
    """Rows ``[N, seq_len]`` (int64) of ``src sep trg eos pad...``; with ``trg_ids=None`` (sampling)
    the target region is all ``pad`` (the sampler overwrites it with noise)."""
    cap = source_cap(seq_len, max_src_len)
    n = len(src_ids)
    if trg_ids is not None and len(trg_ids) != n:
        raise DlmError(f"{n} sources but {len(trg_ids)} targets")
    rows = np.full((n, seq_len), pad, dtype=np.int64)
    st = FramingStats(n_pairs=n, seq_len=seq_len, max_src_len=cap)
    src_total = trg_total = 0
    for i in range(n):
        s = list(src_ids[i])
        if len(s) > cap:
            st.n_src_truncated += 1
            st.src_tokens_cut += len(s) - cap
            s = s[:cap]
        rows[i, : len(s)] = s
        rows[i, len(s)] = sep
        src_total += len(s)
        if trg_ids is None:
            continue
        t = list(trg_ids[i])
        room = seq_len - 2 - len(s)
        if max_trg_len > 0:
            room = min(room, max_trg_len)
        if len(t) > room:
            st.n_trg_truncated += 1
            st.trg_tokens_cut += len(t) - room
            t = t[:room]
        start = len(s) + 1
        rows[i, start : start + len(t)] = t
        rows[i, start + len(t)] = eos
        trg_total += len(t)
    st.mean_src_len = src_total / max(1, n)
    st.mean_trg_len = trg_total / max(1, n)
    return rows, st


def target_mask(rows: torch.Tensor, sep: int) -> torch.Tensor:
    """Bool ``[B, L]``: True after the first ``sep`` of each row (the whole row if it has none)."""
    is_sep = rows == sep
    seen = is_sep.long().cumsum(1)
    mask = (seen > 0) & ~(is_sep & (seen == 1))
    no_sep = seen[:, -1] == 0
    if bool(no_sep.any()):
        mask[no_sep] = True
    return mask


class Seq2SeqBlocks:
    """Framed rows with a train/validation split, in the shape the training loop expects.

    ``train`` and ``valid`` are arrays of row indices; ``batch(idx)`` stacks rows as a LongTensor
    ``[len(idx), seq_len]``. ``sources``/``targets`` keep the raw text of every row (previews,
    evaluation); ``stats`` says what was truncated.
    """

    def __init__(self, rows: np.ndarray, sources: list[str], targets: list[str], stats: FramingStats,
                 valid_fraction: float = 0.0, seed: int = 0):
        if not 0.0 <= valid_fraction < 1.0:
            raise DlmError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
        self.rows = rows
        self.sources = sources
        self.targets = targets
        self.stats = stats
        self.seq_len = rows.shape[1]
        n = len(rows)
        n_valid = min(n - 1, max(1, round(valid_fraction * n))) if valid_fraction > 0 and n > 1 else 0
        perm = np.random.default_rng(seed).permutation(n)
        self.valid: np.ndarray = np.sort(perm[:n_valid])
        self.train: np.ndarray = np.sort(perm[n_valid:])

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, idx: Sequence[int] | np.ndarray) -> torch.LongTensor:
        return torch.from_numpy(self.rows[np.asarray(idx, dtype=np.int64)])


def read_pair_files(spec: str | Sequence[str], src_field: str = "src", trg_field: str = "trg") -> tuple[list[tuple[str, str]], list[str]]:
    """Pairs from one path or a list of paths (jsonl ``{src, trg}`` or ``.tsv``), concatenated."""
    paths = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not paths:
        raise DlmError("no seq2seq data files given")
    pairs: list[tuple[str, str]] = []
    for p in paths:
        if not Path(p).is_file():
            raise DlmError(f"seq2seq data file {p} not found")
        pairs += load_pairs(p, src_field, trg_field)
    return pairs, [str(p) for p in paths]


def build_blocks(pairs: list[tuple[str, str]], tokenizer: Any, *, seq_len: int, max_src_len: int = 0,
                 max_trg_len: int = 0, valid_fraction: float = 0.0, seed: int = 0,
                 files: list[str] | None = None) -> Seq2SeqBlocks:
    """Tokenise and frame ``pairs`` into :class:`Seq2SeqBlocks`."""
    if not pairs:
        raise DlmError("no seq2seq pairs")
    src = tokenizer.encode_batch([s for s, _ in pairs])
    trg = tokenizer.encode_batch([t for _, t in pairs])
    rows, stats = frame_rows(src, trg, seq_len=seq_len, sep=tokenizer.sep_id, eos=tokenizer.eos_id,
                             pad=tokenizer.pad_id, max_src_len=max_src_len, max_trg_len=max_trg_len)
    stats.source_files = list(files or [])
    return Seq2SeqBlocks(rows, [s for s, _ in pairs], [t for _, t in pairs], stats, valid_fraction, seed)


def prepare_seq2seq(cfg: Any, tokenizer: Any, *, report: bool = True) -> tuple[Seq2SeqBlocks, Seq2SeqBlocks, np.ndarray]:
    """``(train_blocks, valid_blocks, valid_order)`` for a run config (``cfg.data``, ``cfg.model.seq_len``).

    Training pairs come from ``data.train``; validation from ``data.valid`` (every row, in file
    order) or, when unset, a random ``data.valid_fraction`` of the training rows. Truncation
    counts are printed to stderr and written to ``<out_dir>/seq2seq_data.json`` when the run
    folder exists.
    """
    d = cfg.data
    if not d.train:
        raise DlmError("no training data: set data.train=PATH (DiffuSeq jsonl {src, trg} or .tsv)")
    L = cfg.model.seq_len
    kw = dict(seq_len=L, max_src_len=d.max_src_len, max_trg_len=d.max_trg_len, seed=cfg.seed)
    pairs, files = read_pair_files(d.train, d.src_field, d.trg_field)
    train = build_blocks(pairs, tokenizer, valid_fraction=0.0 if d.valid else d.valid_fraction, files=files, **kw)
    if d.valid:
        vpairs, vfiles = read_pair_files(d.valid, d.src_field, d.trg_field)
        valid = build_blocks(vpairs, tokenizer, files=vfiles, **kw)
        valid.valid = valid.train
        order = valid.train
    else:
        valid, order = train, train.valid
    if report:
        lines = {"train": train.stats.summary()}
        if valid is not train:
            lines["valid"] = valid.stats.summary()
        for name, line in lines.items():
            print(f"seq2seq {name} data: {line}", file=sys.stderr)
        out = Path(cfg.out_dir)
        if out.is_dir():
            write_json(out / "seq2seq_data.json", {"train": asdict(train.stats),
                                                   "valid": asdict(valid.stats) if valid is not train else None,
                                                   "n_train_rows": len(train.train), "n_valid_rows": len(order)})
    return train, valid, order
