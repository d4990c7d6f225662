"""Figure 1 of the SEDD evaluation paper at this machine's scale: seconds per sequence of every
discrete sampler against an AR model of the same size with its KV cache.

Grid: steps 1, 8, 32, 128, 1024; sequence lengths 128 and 1024; batch 1 and 32. Models: the
``tiny`` preset of each kind, randomly initialised with a 1024-token context (latency does not
depend on the weights). Samplers: masked ancestral and cached, SEDD-absorb and SEDD-uniform Euler
and analytic.

The SEDD samplers and the uncached masked sampler spend the same time on every step, so runs of
more than ``--max-timed-steps`` steps are timed at that many steps and scaled (rows say
``extrapolated_from``; see ``dlm bench latency --max-timed-steps``). The cached masked sampler is
timed in full, in the cells whose worst case (every step a network call, from its 1-step time)
fits ``--budget-s``; the others are listed as skipped.

    python benchmarks/latency_grid.py --max-timed-steps 4 --repeats 1 --warmup 1 --budget-s 60 \
        --skip-cells 1024x32 --plot benchmarks/results/latency_grid.png      # what fits 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from dlmkit.eval.tasks.latency import latency_benchmark
from dlmkit.io import write_json

SAMPLERS = [("mdlm", "ancestral"), ("mdlm", "cached"), ("sedd_absorb", "euler"), ("sedd_absorb", "analytic"),
            ("sedd_uniform", "euler"), ("sedd_uniform", "analytic")]


def log(msg: str) -> None:
    print(f"[latency_grid {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_grid(args: argparse.Namespace, save) -> dict:
    """Time every cell; ``save(partial)`` is called after each (length, batch) cell."""
    common = dict(random_init=args.preset, repeats=args.repeats, warmup=args.warmup, progress=False)
    rows, skipped = [], []
    for L in args.lengths:
        for b in args.batches:
            if f"{L}x{b}" in args.skip_cells:
                skipped.append({"length": L, "batch": b, "reason": "cell skipped (--skip-cells)"})
                continue
            for i, (kind, sampler) in enumerate(SAMPLERS):
                log(f"{kind} {sampler}, L={L} B={b}")
                if sampler == "cached":
                    one = latency_benchmark(kind, steps=[1], lengths=[L], batches=[b], ar_random=False, sampler=sampler, **common)
                    per_call = one["latency"]["rows"][0]["seconds_median"]
                    fits = [s for s in args.steps if s * per_call * (args.repeats + args.warmup) <= args.budget_s]
                    skipped += [{"kind": kind, "sampler": sampler, "length": L, "batch": b, "steps": s,
                                 "reason": f"worst case {s * per_call:.0f} s per run over the budget"} for s in args.steps if s not in fits]
                    res = latency_benchmark(kind, steps=fits, lengths=[L], batches=[b], ar_random=False, sampler=sampler, **common) if fits else None
                else:
                    res = latency_benchmark(kind, steps=args.steps, lengths=[L], batches=[b], ar_random=i == 0, sampler=sampler,
                                            max_timed_steps=args.max_timed_steps, **common)  # the first also times the AR model
                if res is not None:
                    rows += [{**r, "sampler": sampler if r["kind"] != "ar" else "kv_cache"} for r in res["latency"]["rows"]]
            save({"rows": rows, "skipped": skipped})
    return {"rows": rows, "skipped": skipped}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 8, 32, 128, 1024])
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--max-timed-steps", type=int, default=8)
    p.add_argument("--budget-s", type=float, default=120.0, help="largest worst-case time of one cached-sampler run")
    p.add_argument("--skip-cells", nargs="*", default=[], metavar="LxB", help="cells not to time, e.g. 1024x32")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/latency_grid.json"))
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args()
    start = time.perf_counter()

    def save(grid: dict) -> dict:
        result = {"settings": {k: str(v) for k, v in vars(args).items()}, "threads": torch.get_num_threads(), **grid,
                  "seconds": time.perf_counter() - start}
        write_json(args.out, result)
        return result

    result = save(run_grid(args, save))
    if args.plot:
        plot(result, args.plot)
    print(table(result))


def table(result: dict) -> str:
    """Seconds per sequence: one line per (length, batch, sampler), one column per steps value."""
    steps = sorted({r["steps"] for r in result["rows"] if r["steps"] is not None})
    lines = ["| L | B | sampler | " + " | ".join(f"{s} steps" for s in steps) + " |", "|---:|---:|---|" + "---:|" * len(steps)]
    keys = sorted({(r["length"], r["batch"], r["kind"], r["sampler"]) for r in result["rows"]}, key=lambda k: (k[0], k[1], k[2] != "ar", k[2], k[3]))
    for L, b, kind, sampler in keys:
        cells = {r["steps"]: r for r in result["rows"] if (r["length"], r["batch"], r["kind"], r["sampler"]) == (L, b, kind, sampler)}
        if kind == "ar":
            lines.append(f"| {L} | {b} | AR, KV cache | " + " | ".join(f"{cells[None]['seconds_per_sequence']:.3g}" for _ in steps) + " |")
            continue
        fmt = [f"{cells[s]['seconds_per_sequence']:.3g}{'*' if cells[s].get('extrapolated_from') else ''}" if s in cells else "-" for s in steps]
        lines.append(f"| {L} | {b} | {kind} {sampler} | " + " | ".join(fmt) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({(r["length"], r["batch"]) for r in result["rows"]})
    fig, axes = plt.subplots(1, len(cells), figsize=(4 * len(cells), 3.6), squeeze=False)
    for ax, (L, b) in zip(axes[0], cells):
        mine = [r for r in result["rows"] if (r["length"], r["batch"]) == (L, b)]
        for kind, sampler in SAMPLERS:
            d = sorted((r for r in mine if r["kind"] == kind and r["sampler"] == sampler), key=lambda r: r["steps"])
            if d:
                ax.plot([r["steps"] for r in d], [r["seconds_per_sequence"] for r in d], "o-", ms=3, label=f"{kind} {sampler}")
        ar = [r for r in mine if r["kind"] == "ar"]
        if ar:
            ax.axhline(ar[0]["seconds_per_sequence"], color="k", ls="--", label="AR (KV cache)")
        ax.set(xscale="log", yscale="log", xlabel="sampling steps", title=f"L={L}, batch {b}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("seconds per sequence")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
