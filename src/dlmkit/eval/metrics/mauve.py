"""MAUVE (Pillutla et al., 2021) via ``mauve-text`` on precomputed features.

Features come from ``extract_features`` with a local Hugging Face model folder (offline), or
from anywhere else as an ``(n, d)`` array. MAUVE's paper embeds text with GPT-2 large and takes
the *last token's* final hidden state (``pooling="last"``, what mauve-text's own featurizer
does); for sentence encoders such as all-MiniLM-L6-v2 use ``pooling="mean"``, the masked mean
of the final hidden states, which is how that model was trained to embed sentences. MAUVE
values depend on the feature model, so only compare numbers computed with the same one.

Quantisation settings are mauve-text's defaults, which is what papers report: ``num_buckets``
``"auto"`` = max(2, round(min(n_p, n_q) / 10)) k-means clusters after PCA keeping 90% of the
variance, k-means with 5 restarts and at most 500 iterations, scaling factor 5. They are fast
on CPU at evaluation sizes (thousands of samples); tests pass smaller values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Union

import numpy as np
import torch

from dlmkit.errors import DlmError
from dlmkit.eval.metrics.optional import import_eval_dependency

DEFAULT_SEEDS = (0, 1, 2, 3, 4)


@torch.no_grad()
def extract_features(
    texts: Sequence[str],
    model_path: str | os.PathLike[str],
    *,
    pooling: Literal["mean", "last"] = "mean",
    batch_size: int = 16,
    max_length: int = 512,
    device: str = "cpu",
) -> np.ndarray:
    """Embed texts with a local model's final hidden states; returns float32 ``(n, d)``.

    ``pooling="mean"``: mean over non-padding positions; ``"last"``: the last non-padding
    position (for causal LMs like GPT-2, as in the MAUVE paper). Texts are truncated to
    ``max_length`` tokens.
    """
    if pooling not in ("mean", "last"):
        raise ValueError(f"pooling must be 'mean' or 'last', got {pooling!r}")
    if not Path(model_path).is_dir():
        raise DlmError(f"feature model folder not found: {model_path}")
    if not texts:
        raise DlmError("no texts to embed")
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = AutoModel.from_pretrained(str(model_path), local_files_only=True).to(device).eval()
    feats = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"]
        if pooling == "mean":
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        else:
            pooled = hidden[torch.arange(hidden.shape[0]), mask.sum(1) - 1]
        feats.append(pooled.float().cpu())
    return torch.cat(feats).numpy()


def mauve(
    p_features: np.ndarray,
    q_features: np.ndarray,
    *,
    seed: int = 25,
    num_buckets: Union[int, Literal["auto"]] = "auto",
    kmeans_num_redo: int = 5,
    kmeans_max_iter: int = 500,
    kmeans_explained_var: float = 0.9,
    mauve_scaling_factor: float = 5,
) -> float:
    """MAUVE between feature sets P (e.g. human text) and Q (model text); 1.0 = same.

    ``seed`` seeds mauve-text's PCA and k-means (its default is 25).
    """
    p, q = _as_features(p_features, "p"), _as_features(q_features, "q")
    if p.shape[1] != q.shape[1]:
        raise DlmError(f"feature sizes differ: p has {p.shape[1]}, q has {q.shape[1]}")
    out = import_eval_dependency("mauve").compute_mauve(
        p_features=p,
        q_features=q,
        num_buckets=num_buckets,
        kmeans_num_redo=kmeans_num_redo,
        kmeans_max_iter=kmeans_max_iter,
        kmeans_explained_var=kmeans_explained_var,
        mauve_scaling_factor=mauve_scaling_factor,
        seed=seed,
    )
    return float(out.mauve)


def mauve_over_seeds(
    p_features: np.ndarray,
    q_features: np.ndarray,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    **kwargs: object,
) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) of ``mauve`` over k-means seeds.

    ``kwargs`` go to ``mauve`` (``num_buckets``, ``kmeans_*``, ``mauve_scaling_factor``).
    """
    if not seeds:
        raise ValueError("mauve_over_seeds needs at least one seed")
    values = np.array([mauve(p_features, q_features, seed=s, **kwargs) for s in seeds])
    return float(values.mean()), float(values.std())


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise DlmError(f"{name}_features must be an (n >= 2, d) array, got shape {arr.shape}")
    return arr
