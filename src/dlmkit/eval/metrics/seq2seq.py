"""Seq2seq metrics defined exactly as DiffuSeq's current ``scripts/eval_seq2seq.py``, plus file readers.

Numbers are meant to be comparable with the DiffuSeq and DLM-One papers, so the definitions
follow that script (its version since February 2023, "We update the evaluation scripts"):

* Text is split on whitespace, case kept, no detokenisation. Special tokens of DiffuSeq's BERT
  tokenizer are deleted (replaced with nothing) after stripping, as the script does: see
  ``clean_output``, ``clean_reference`` and ``clean_source``.
* Sentence BLEU is NLTK's ``sentence_bleu([reference.split()], output.split(),
  smoothing_function=SmoothingFunction().method4)``, the standard orientation (DiffuSeq's
  November 2022 script had the arguments swapped; its figures are not reproduced here).
* ROUGE-L is the per-sentence F-measure, averaged. DiffuSeq uses torchmetrics' ``ROUGEScore()``
  whose defaults (no stemming, lowercase, non-alphanumerics to spaces) copy rouge-score's
  tokenizer; we call rouge-score with ``use_stemmer=False``. The F-measure is symmetric.
* Dist-1 is per-sentence distinct unigrams / unigrams, averaged over sentences.
* Self-BLEU and Div-4 are computed over the candidates decoded for one source (one per seed)
  and averaged over sources.
* ``avg_len`` is DiffuSeq's "avg len", ``len(output.split(' '))`` (empty strings between
  repeated or edge spaces count); ``hyp_len`` is dlmkit's whitespace-token count.
* BERTScore is optional and uses a local model (see ``dlmkit.eval.metrics.bertscore``).

Multi-reference sets (ASSET: 10 simplifications per source) get NLTK BLEU with all references
clipped together, plus sacreBLEU's corpus BLEU.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any, Iterable, TypeVar, Union

from tqdm import tqdm

from dlmkit.errors import DlmError
from dlmkit.io import jsonl_records, split_lines
from dlmkit.eval.metrics.bertscore import bertscore
from dlmkit.eval.metrics.diversity import dist_n, div_n
from dlmkit.eval.metrics.optional import import_eval_dependency

# What DiffuSeq's script deletes, in its order (eos, sos, sep, pad of its BERT tokenizer): the
# order matters only for nested tokens ("[CL[SEP]S]"), kept so that every string matches.
OUTPUT_SPECIAL_TOKENS = ("[SEP]", "[CLS]", "[SEP]", "[PAD]")
REFERENCE_SPECIAL_TOKENS = ("[SEP]", "[CLS]", "[SEP]")
SOURCE_SPECIAL_TOKENS = ("[SEP]", "[CLS]")

References = Union[Sequence[str], Sequence[Sequence[str]]]
T = TypeVar("T")


def progress_bar(items: Iterable[T], desc: str, progress: bool, total: int | None = None) -> Iterable[T]:
    """``items`` with a tqdm bar on stderr when ``progress`` (as every dlmkit command's)."""
    return tqdm(items, desc=desc, total=total, disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------- cleaning


def _delete(text: str, tokens: Sequence[str]) -> str:
    for tok in tokens:
        text = text.replace(tok, "")
    return text


def clean_output(text: str) -> str:
    """DiffuSeq's cleaning of a model output: strip, then delete [SEP], [CLS], [PAD] (no space
    is put in their place, and inner or edge spaces left behind are kept: ``"What[PAD]is"`` ->
    ``"Whatis"``, ``"[CLS] a [SEP]"`` -> ``" a "``)."""
    return _delete(text.strip(), OUTPUT_SPECIAL_TOKENS)


def clean_reference(text: str) -> str:
    """DiffuSeq's cleaning of a reference: strip, then delete [SEP] and [CLS] ([PAD] is kept)."""
    return _delete(text.strip(), REFERENCE_SPECIAL_TOKENS)


def clean_source(text: str) -> str:
    """DiffuSeq's cleaning of a source: strip, then delete [SEP] and [CLS]."""
    return _delete(text.strip(), SOURCE_SPECIAL_TOKENS)


# --------------------------------------------------------------------------- BLEU


def sentence_bleu(hyp: str, ref: str) -> float:
    """DiffuSeq's sentence BLEU of one model output ``hyp`` against one reference ``ref``.

    ``nltk.translate.bleu_score.sentence_bleu([ref.split()], hyp.split(),
    smoothing_function=SmoothingFunction().method4)``, as DiffuSeq's ``get_bleu(recover,
    reference)``: n-gram precision over the output's n-grams, brevity penalty when the output
    is shorter than the reference; 0.0 for an empty output.
    """
    nltk_bleu = import_eval_dependency("nltk.translate.bleu_score")
    return float(
        nltk_bleu.sentence_bleu(
            [ref.split()], hyp.split(), smoothing_function=nltk_bleu.SmoothingFunction().method4
        )
    )


def bleu(hyps: Sequence[str], refs: Sequence[str], *, progress: bool = False) -> float:
    """Mean DiffuSeq sentence BLEU (``sentence_bleu``) over aligned output/reference pairs."""
    _check_aligned(hyps, refs)
    return fmean(sentence_bleu(h, r) for h, r in progress_bar(zip(hyps, refs), "BLEU", progress, len(hyps)))


def multi_ref_sentence_bleu(hyp: str, refs: Sequence[str]) -> float:
    """NLTK sentence BLEU of one output against several references, standard orientation.

    ``sentence_bleu([r.split() for r in refs], hyp.split(), method4)``: counts are clipped by
    the maximum count over references and the brevity penalty uses the closest reference length.
    """
    nltk_bleu = import_eval_dependency("nltk.translate.bleu_score")
    if not refs:
        raise ValueError("multi-reference BLEU needs at least one reference")
    return float(
        nltk_bleu.sentence_bleu(
            [r.split() for r in refs],
            hyp.split(),
            smoothing_function=nltk_bleu.SmoothingFunction().method4,
        )
    )


def multi_ref_bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], *, progress: bool = False) -> float:
    """Mean ``multi_ref_sentence_bleu`` over outputs; ``refs[i]``: the references of ``hyps[i]``."""
    _check_aligned(hyps, refs)
    pairs = progress_bar(zip(hyps, refs), "BLEU", progress, len(hyps))
    return fmean(multi_ref_sentence_bleu(h, r) for h, r in pairs)


def corpus_bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """sacreBLEU corpus BLEU (0-100, default 13a tokenisation), the usual number for ASSET.

    ``refs[i]`` holds the references of ``hyps[i]``; every output needs the same number.
    """
    _check_aligned(hyps, refs)
    counts = {len(r) for r in refs}
    if len(counts) != 1:
        raise DlmError(
            f"corpus BLEU needs the same number of references per output, got {sorted(counts)}"
        )
    sacrebleu = import_eval_dependency("sacrebleu")
    streams = [list(stream) for stream in zip(*refs)]
    return float(sacrebleu.corpus_bleu(list(hyps), streams).score)


# --------------------------------------------------------------------------- ROUGE, Dist


def rouge_l(hyps: Sequence[str], refs: References, *, progress: bool = False) -> float:
    """Mean per-sentence ROUGE-L F-measure from rouge-score, without stemming (as DiffuSeq).

    With several references per output, the best F-measure over them counts (rouge-score's
    ``score_multi``).
    """
    _check_aligned(hyps, refs)
    scorer = import_eval_dependency("rouge_score.rouge_scorer").RougeScorer(
        ["rougeL"], use_stemmer=False
    )
    scores = []
    for hyp, ref in progress_bar(zip(hyps, refs), "ROUGE-L", progress, len(hyps)):
        if isinstance(ref, str):
            scores.append(scorer.score(ref, hyp)["rougeL"].fmeasure)
        else:
            scores.append(scorer.score_multi(list(ref), hyp)["rougeL"].fmeasure)
    return fmean(scores)


def dist1(hyps: Sequence[str]) -> float:
    """DiffuSeq's Dist-1: per sentence distinct / total whitespace unigrams, averaged."""
    if not hyps:
        raise ValueError("dist1 needs at least one sentence")
    return fmean(dist_n(h.split(), 1) for h in hyps)


# --------------------------------------------------------------------------- diversity over seeds


def self_bleu(candidates: Sequence[str]) -> float:
    """DiffuSeq's Self-BLEU of the candidates for one source: mean over pairs i < j of
    ``sentence_bleu(candidates[i], candidates[j])`` (each unordered pair once, the earlier
    candidate as the output, the later as the reference); 0.0 with fewer than two candidates."""
    scores = [
        sentence_bleu(candidates[i], candidates[j])
        for i in range(len(candidates))
        for j in range(i + 1, len(candidates))
    ]
    return fmean(scores) if scores else 0.0


def div4(candidates: Sequence[str]) -> float:
    """DiffuSeq's Div-4 of one source's candidates: distinct / total 4-grams pooled over them."""
    return div_n([c.split() for c in candidates], 4)


def seed_diversity(candidate_sets: Sequence[Sequence[str]], *, progress: bool = False) -> dict[str, float]:
    """Self-BLEU and Div-4 averaged over sources; ``candidate_sets[i]``: outputs for source i."""
    sets = [c for c in candidate_sets if len(c) > 0]
    if not sets:
        raise ValueError("seed_diversity needs at least one non-empty candidate set")
    self_bleus = [self_bleu(c) for c in progress_bar(sets, "Self-BLEU", progress)]
    return {"self_bleu": fmean(self_bleus), "div4": fmean(div4(c) for c in sets)}


def group_by_source(outputs_per_seed: Sequence[Sequence[str]]) -> list[list[str]]:
    """Turn ``[seed][source]`` output lists (one file per seed) into ``[source][seed]`` sets."""
    counts = {len(o) for o in outputs_per_seed}
    if len(counts) > 1:
        raise DlmError(f"seed runs have different numbers of outputs: {sorted(counts)}")
    return [list(c) for c in zip(*outputs_per_seed)]


# --------------------------------------------------------------------------- all at once


def evaluate_seq2seq(
    hyps: Sequence[str],
    refs: References,
    *,
    sources: Sequence[str] | None = None,
    candidates: Sequence[Sequence[str]] | None = None,
    bertscore_model: str | os.PathLike[str] | None = None,
    bertscore_layers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Every DiffuSeq metric for one set of outputs.

    ``refs``: one reference string per output, or a list of references per output (then BLEU
    is ``multi_ref_bleu`` under the key ``"multi_ref_bleu"`` plus ``"corpus_bleu"`` from
    sacreBLEU, instead of ``"bleu"``). ``candidates``: per source, the outputs of several seeds,
    for Self-BLEU and Div-4. ``bertscore_model``: a local model folder (see
    ``dlmkit.eval.metrics.bertscore.default_model_path``; ``bertscore_layers`` its layer, needed for
    a non-default model); BERTScore F1 is skipped when None. ``avg_len``: DiffuSeq's mean
    ``len(output.split(' '))``; ``hyp_len``, ``ref_len``, ``src_len``: mean whitespace-token
    counts. ``progress``: tqdm bars on stderr.
    """
    _check_aligned(hyps, refs)
    if not hyps:
        raise DlmError("nothing to evaluate: no outputs")
    multi = not isinstance(refs[0], str)
    out: dict[str, Any] = {"n": len(hyps)}
    if multi:
        out["multi_ref_bleu"] = multi_ref_bleu(hyps, refs, progress=progress)  # type: ignore[arg-type]
        out["corpus_bleu"] = corpus_bleu(hyps, refs)  # type: ignore[arg-type]
    else:
        out["bleu"] = bleu(hyps, refs, progress=progress)  # type: ignore[arg-type]
    out["rouge_l"] = rouge_l(hyps, refs, progress=progress)
    out["dist1"] = dist1(hyps)
    if bertscore_model is not None:
        scores = bertscore(hyps, refs, model_path=bertscore_model, num_layers=bertscore_layers, progress=progress)
        out["bertscore_f1"] = fmean(scores.f1)
    out["avg_len"] = fmean(len(h.split(" ")) for h in hyps)
    out["hyp_len"] = fmean(len(h.split()) for h in hyps)
    ref_lists = [[r] if isinstance(r, str) else list(r) for r in refs]
    out["ref_len"] = fmean(len(r.split()) for rs in ref_lists for r in rs)
    if sources is not None:
        _check_aligned(hyps, sources, "sources")
        out["src_len"] = fmean(len(s.split()) for s in sources)
    if candidates is not None:
        out.update(seed_diversity(candidates, progress=progress))
    return out


def _check_aligned(hyps: Sequence[Any], other: Sequence[Any], name: str = "references") -> None:
    if len(hyps) != len(other):
        raise DlmError(f"{len(hyps)} outputs but {len(other)} {name}")


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Seq2SeqFile:
    """Contents of a DiffuSeq jsonl file; ``hypotheses`` is None for the input format."""

    sources: list[str]
    references: list[str]
    hypotheses: list[str] | None


def _read_text(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    if not p.is_file():
        raise DlmError(f"no such file: {p}")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        warnings.warn(
            f"{p} is not valid UTF-8 ({exc.reason} at byte {exc.start}); "
            "undecodable bytes were replaced with U+FFFD",
            stacklevel=3,
        )
        text = data.decode("utf-8", errors="replace")
    if not text.strip():
        raise DlmError(f"empty file: {p}")
    return text


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """One text per line (line breaks stripped, blank lines kept as empty texts)."""
    return split_lines(_read_text(path))


def read_diffuseq_jsonl(path: str | os.PathLike[str]) -> Seq2SeqFile:
    """Read DiffuSeq data (``{"src", "trg"}`` per line) or decoder output
    (``{"recover", "reference", "source"}``), detected from the first record.

    Output files are cleaned as DiffuSeq's evaluation does before scoring (``clean_output``,
    ``clean_reference``, ``clean_source``).
    """
    rows = list(jsonl_records(path, _read_text(path)))
    is_output = "recover" in rows[0][1]
    keys = ("source", "reference", "recover") if is_output else ("src", "trg")
    for lineno, row in rows:
        missing = [k for k in keys if not isinstance(row.get(k), str)]
        if missing:
            raise DlmError(f"{path}:{lineno}: missing string field(s) {', '.join(missing)}")
    if not is_output:
        return Seq2SeqFile([r["src"] for _, r in rows], [r["trg"] for _, r in rows], None)
    return Seq2SeqFile(
        [clean_source(r["source"]) for _, r in rows],
        [clean_reference(r["reference"]) for _, r in rows],
        [clean_output(r["recover"]) for _, r in rows],
    )


def read_multi_reference(
    source_path: str | os.PathLike[str], reference_paths: Sequence[str | os.PathLike[str]]
) -> tuple[list[str], list[list[str]]]:
    """Read a source file and N aligned reference files (one line per source in each).

    Returns ``(sources, refs)`` with ``refs[i]`` the N references of source ``i``.
    """
    if not reference_paths:
        raise DlmError("no reference files given")
    sources = read_lines(source_path)
    columns = [read_lines(p) for p in reference_paths]
    for path, col in zip(reference_paths, columns):
        if len(col) != len(sources):
            raise DlmError(f"{path} has {len(col)} lines but {source_path} has {len(sources)}")
    return sources, [list(r) for r in zip(*columns)]


def read_asset(
    folder: str | os.PathLike[str], split: str = "test", n_refs: int = 10
) -> tuple[list[str], list[list[str]]]:
    """ASSET's ``asset.<split>.orig`` and ``asset.<split>.simp.0`` .. ``.simp.<n_refs-1>``."""
    root = Path(folder)
    return read_multi_reference(
        root / f"asset.{split}.orig", [root / f"asset.{split}.simp.{i}" for i in range(n_refs)]
    )
