"""Where a DiffuSeq teacher stands: its denoising accuracy by noise level, with and without its source.

For each run (``WORK/TASK/diffuseq`` of ``benchmarks/diffuseq_bench.py``) and the first
``--rows`` evaluation pairs of the task: noise the target part to step ``t`` (the training
forward process, one draw, fixed seed), predict x0 once and decode it by the rounding head.
``acc`` is the share of target tokens (padding excluded) recovered; ``acc_no_source`` the same
with the source embeddings replaced by Gaussian noise of the same scale, so the gap is what the
model takes from the source. A converged teacher recovers most tokens from the source alone at
``t = T - 1``, where the target part is pure noise; sampling starts there.

    python benchmarks/diffuseq_probe.py --work runs/s2s --tasks qqp quasar_t simplification

Writes JSON (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diffuseq_bench as DB  # noqa: E402

from dlmkit.data.seq2seq_blocks import build_blocks  # noqa: E402
from dlmkit.methods.diffuseq import unwrap  # noqa: E402
from dlmkit.hub.load import load as load_model  # noqa: E402


@torch.no_grad()
def probe(run: Path, task: str, pairs: list[tuple[str, str]], ts: list[int], seed: int) -> list[dict[str, Any]]:
    model, tok = load_model(run)
    method, net = model.method, unwrap(model.net)
    blocks = build_blocks(pairs, tok, seq_len=model.seq_len, max_src_len=DB.max_src_len(task, model.seq_len),
                          valid_fraction=0.0, seed=seed)
    x0 = torch.as_tensor(blocks.batch(blocks.train[: len(pairs)]))
    target = method.target_mask(x0)
    scored = target & (x0 != method.specials.pad)
    emb = net.embed(x0)
    out = []
    for t in ts:
        tt = torch.full((len(x0),), t)
        x_t = method.diffusion.q_sample(emb, tt, target, generator=torch.Generator().manual_seed(seed))
        no_src = torch.where(target[..., None], x_t, torch.randn(x_t.shape, generator=torch.Generator().manual_seed(seed + 1)) * emb.std())
        row = {"t": t, "alpha_bar": float(method.diffusion.alphas_cumprod[t])}
        for name, x in (("acc", x_t), ("acc_no_source", no_src)):
            pred = net.logits(net.x0(x, tt)).argmax(-1)
            row[name] = float(((pred == x0) & scored).sum() / scored.sum())
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DB.DEFAULT_DATA)
    p.add_argument("--work", default="runs/diffuseq_bench")
    p.add_argument("--tasks", nargs="+", default=list(DB.TASKS), choices=DB.TASKS)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--t", type=int, nargs="+", default=[50, 400, 800, 1200, 1600, 1900, 1999])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/diffuseq_probe.json")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    report: dict[str, Any] = {"benchmark": "diffuseq_probe", "settings": vars(args), "tasks": {}}
    for task in args.tasks:
        _, sources, refs = DB.task_data(Path(args.data), task)
        pairs = [(s, r if isinstance(r, str) else r[0]) for s, r in list(zip(sources, refs))[: args.rows]]
        run = Path(args.work) / task / "diffuseq"
        report["tasks"][task] = {"run": str(run), "by_t": probe(run, task, pairs, args.t, args.seed)}
        print(f"{task}: " + ", ".join(f"t={r['t']}: {r['acc']:.3f} ({r['acc_no_source']:.3f} without source)"
                                      for r in report["tasks"][task]["by_t"]))
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
