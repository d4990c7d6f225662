"""BLEU (and exact-match rate) of every saved checkpoint of seq2seq runs: how fast each kind learns.

For the runs of ``diffuseq_bench.py`` (``WORK/TASK/{diffuseq,ar}``, saved every ``--save-every``
steps), each checkpoint generates the task's first ``--eval-sources`` evaluation targets (the
DiffuSeq teacher with ``--sample-steps`` DDIM steps, the AR model greedily with its KV cache) and
is scored with the bench's BLEU; ``exact`` is the share of outputs equal to their reference::

    python benchmarks/seq2seq_curve.py --work runs/num --tasks numbers --eval-sources 100 --sample-steps 50 \\
        --out benchmarks/results/seq2seq_curve_numbers.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diffuseq_bench as DB  # noqa: E402

from dlmkit.generate.seq2seq import generate_targets  # noqa: E402
from dlmkit.hub.checkpoint import step_folders  # noqa: E402
from dlmkit.hub.load import load as load_model  # noqa: E402


def curve(run: Path, sources: list[str], refs: list[Any], *, steps: int | None, max_src_len: int) -> list[dict[str, Any]]:
    """One row per saved checkpoint of ``run``, oldest first (``steps``: DDIM steps; None for AR)."""
    rows = []
    for folder in reversed(step_folders(run)):
        model, tok = load_model(folder)
        kw = {"steps": steps} if steps else {}
        res = generate_targets(model, tok, sources, seed=0, batch_size=100, max_src_len=max_src_len, **kw)
        hyps = [c[0] for c in res["candidates"]]
        exact = sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / len(refs) if isinstance(refs[0], str) else None
        rows.append({"step": int(folder.name.split("_")[1]), "BLEU": DB._bleu(hyps, refs), "exact": exact})
        print(f"[{run}] step {rows[-1]['step']}: BLEU {rows[-1]['BLEU']:.4f}, exact {exact}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    DB.add_shared_args(p)
    p.add_argument("--tasks", nargs="+", default=["numbers"], choices=DB.TASKS)
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps of the diffusion checkpoints")
    p.add_argument("--out", required=True)
    args = DB.finish_args(p.parse_args(argv))
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    report: dict[str, Any] = {"benchmark": "seq2seq_curve", "sample_steps": args.sample_steps, "tasks": {}}
    for task in args.tasks:
        _, sources, refs, _ = DB.task_pairs(args, task)
        report["tasks"][task] = {kind: curve(Path(args.work) / task / kind, sources, refs, max_src_len=args.max_src_len[task],
                                             steps=args.sample_steps if kind == "diffuseq" else None)
                                 for kind in ("diffuseq", "ar") if (Path(args.work) / task / kind).is_dir()}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
