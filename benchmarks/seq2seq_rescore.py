"""Recompute the seq2seq benches' metric columns with the current metrics, without the run folders.

For each results JSON of ``diffuseq_bench.py`` or ``dlm_one_bench.py``:

* every row whose generated texts are in the sidecar ``OUT.outputs.jsonl`` (written by the
  benches since the metrics follow DiffuSeq's current script) is rescored; an MBR row chooses
  again among its stored candidates;
* a ``copy source`` row is recomputed from the task data (its outputs are the sources);
* every other row with metric columns is listed under ``not_recomputed`` (reports written
  before the sidecar existed keep only three example outputs per task).

Prints old -> new for every figure; ``--write`` updates the results JSON in place (adding the
new columns, e.g. ``avg_len``, and a ``rescored`` note); ``--out`` writes the comparison::

    python benchmarks/seq2seq_rescore.py benchmarks/results/diffuseq_*.json benchmarks/results/dlm_one_*.json \\
        --out benchmarks/results/seq2seq_rescore.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diffuseq_bench as DB  # noqa: E402

from dlmkit.eval.metrics.mbr import mbr_decode  # noqa: E402

METRIC_KEYS = ("BLEU", "exact", "bleu", "multi_ref_bleu", "corpus_bleu", "rouge_l", "bertscore_f1", "dist1", "self_bleu", "div4",
               "avg_len", "hyp_len", "empty", "repeat")


def rescore_texts(row: dict[str, Any], recover: list[str], refs: list[Any], sources: list[str] | None,
                  candidates: list[list[str]] | None, mbr: bool) -> dict[str, Any]:
    """The row's metric columns from its texts, computed as the bench computes them today."""
    if mbr:
        recover = mbr_decode(candidates)  # type: ignore[arg-type]
    if "rouge_l" not in row:  # a BLEU-over-steps entry
        return {"BLEU": DB._bleu(recover, refs)}
    div = candidates if (not mbr and candidates and min(len(c) for c in candidates) > 1) else None
    return DB.metrics(recover, refs, sources=sources, candidates=div, bertscore="bertscore_f1" in row)


def _get(report: Any, path: list[Any]) -> Any:
    for k in path:
        report = report[k]
    return report


def _rows(node: Any, path: list[Any]) -> list[list[Any]]:
    """Paths of every metric row (a dict with a ``BLEU`` column)."""
    if isinstance(node, dict):
        here = [path] if "BLEU" in node else []
        return here + [p for k, v in node.items() for p in _rows(v, [*path, k])]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _rows(v, [*path, i])]
    return []


def _label(report: dict[str, Any], path: list[Any]) -> str:
    row = _get(report, path)
    task = report["tasks"][path[1]]["task"] if len(path) > 1 and path[0] == "tasks" else "?"
    name = row.get("system") or (f"steps {row['steps']}" if "rouge_l" not in row else str(path[-1]))
    return f"{task} / {'/'.join(str(p) for p in path[2:-1])} / {name}"


def rescore_report(path: Path, data_root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the report with rescored rows, the comparison: changes and what could not be recomputed)."""
    report = json.loads(path.read_text(encoding="utf-8"))
    done: dict[str, dict[str, Any]] = {}
    sidecar = path.with_suffix(".outputs.jsonl")
    entries = [json.loads(x) for x in sidecar.read_text(encoding="utf-8").splitlines() if x.strip()] if sidecar.is_file() else []
    jobs: list[tuple[list[list[Any]], dict[str, Any]]] = [
        (e["paths"], dict(recover=e["recover"], refs=e["reference"], sources=e["source"], candidates=e["candidates"], mbr=e["mbr"]))
        for e in entries]
    for p in _rows(report, []):
        row = _get(report, p)
        if row.get("system") == "copy source" and p[0] == "tasks":
            task = report["tasks"][p[1]]
            _, sources, refs = DB.task_data(data_root, task["task"])
            n = task["n_eval_sources"]
            jobs.append(([p], dict(recover=sources[:n], refs=refs[:n], sources=sources[:n], candidates=None, mbr=False)))
    for paths, texts in jobs:
        first = _get(report, paths[0])
        new = rescore_texts(first, texts["recover"], texts["refs"], texts["sources"], texts["candidates"], texts["mbr"])
        changes = {k: {"old": first.get(k), "new": new[k]} for k in METRIC_KEYS if k in new and isinstance(new[k], float)}
        for p in paths:
            row = _get(report, p)
            row.update({k: v for k, v in new.items() if k in METRIC_KEYS})
            row["rescored"] = "metrics recomputed by benchmarks/seq2seq_rescore.py (standard BLEU order)"
            done["/".join(map(str, p))] = {"row": _label(report, p), "changes": changes}
    missing = [_label(report, p) for p in _rows(report, []) if "/".join(map(str, p)) not in done]
    return report, {"file": str(path), "sidecar": str(sidecar) if entries else None,
                    "rescored": list(done.values()), "not_recomputed": missing}


def render(cmp: dict[str, Any]) -> str:
    lines = [f"\n## {cmp['file']}", "", "| row | metric | old | new | new - old |", "|---|---|---:|---:|---:|"]
    for r in cmp["rescored"]:
        for k, v in r["changes"].items():
            old = v["old"]
            delta = f"{v['new'] - old:+.4f}" if isinstance(old, (int, float)) else "new"
            lines.append(f"| {r['row']} | {k} | {old if old is None else f'{old:.4f}'} | {v['new']:.4f} | {delta} |")
    if cmp["not_recomputed"]:
        lines += ["", f"not recomputed (no stored outputs): {len(cmp['not_recomputed'])} rows"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="+", help="results JSON files of diffuseq_bench.py / dlm_one_bench.py")
    p.add_argument("--data", default=DB.DEFAULT_DATA, help="seq2seq data folder (for the copy-source rows)")
    p.add_argument("--write", action="store_true", help="update the results JSON files in place")
    p.add_argument("--out", default=None, help="write the comparison (old/new per figure) as JSON")
    args = p.parse_args(argv)
    comparisons = []
    for f in args.results:
        report, cmp = rescore_report(Path(f), Path(args.data))
        comparisons.append(cmp)
        print(render(cmp))
        if args.write and cmp["rescored"]:
            Path(f).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    if args.out:
        Path(args.out).write_text(json.dumps(comparisons, indent=2) + "\n", encoding="utf-8")
    return comparisons


if __name__ == "__main__":
    main()
