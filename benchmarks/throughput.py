"""Training throughput of the size presets against this machine's dense matmul peak.

For each preset: tokens/s of full training steps (forward, backward, AdamW) of the AR model on
random tokens, the FLOP/s they achieve (6 N per token for the weight matmuls, N without the
input embedding, plus 6 n_layers seq_len d_model per token for attention scores and values,
forward and backward), and that as a fraction of the peak: the best fp32 matmul FLOP/s measured
in the same run, interleaved with the model timings so both see the same machine load.

    python benchmarks/throughput.py --presets tiny small --out benchmarks/results/throughput.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from dlmkit.engine.config import load_config
from dlmkit.methods.base import Specials
from dlmkit.hub.model import DlmModel
from dlmkit.io import write_json
from dlmkit.networks.transformer import BackboneConfig


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best observed fp32 FLOP/s of an n x n x n matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def preset_model(name: str, vocab: int) -> tuple[DlmModel, int]:
    m = load_config(name).model
    bcfg = BackboneConfig(vocab_size=vocab, n_layers=m.n_layers, d_model=m.d_model, n_heads=m.n_heads, d_cond=m.d_cond, seq_len=m.seq_len)
    return DlmModel.build("ar", bcfg, Specials(eos=0, pad=0, mask=1, sep=0)), m.seq_len


def flops_per_token(model: DlmModel, seq_len: int) -> float:
    c = model.net.cfg
    n = model.net.num_params(non_embedding=True)
    return 6 * n + 6 * c.n_layers * seq_len * c.d_model


def time_steps(model: DlmModel, batch: int, seq_len: int, steps: int) -> float:
    """Median seconds of a training step after one warm-up step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, model.method.vocab_size, (batch, seq_len), generator=gen)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        loss, _ = model.method.loss(model.net, x, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "small"])
    p.add_argument("--batch", type=int, nargs="+", default=None, help="sequences per step for each preset (default: tiny 32, small 4)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/throughput.json")
    args = p.parse_args()
    torch.manual_seed(0)
    defaults = {"tiny": (32, 4096), "small": (4, 50258), "medium": (2, 50258)}
    rows = []
    peaks = [matmul_peak()]
    for i, name in enumerate(args.presets):
        batch = args.batch[i] if args.batch else defaults.get(name, (4, 50258))[0]
        vocab = defaults.get(name, (4, 50258))[1]
        model, seq_len = preset_model(name, vocab)
        model.train()
        step_s = time_steps(model, batch, seq_len, args.steps)
        peaks.append(matmul_peak())
        tok_s = batch * seq_len / step_s
        fpt = flops_per_token(model, seq_len)
        rows.append(
            {
                "preset": name,
                "params_non_embedding": model.net.num_params(non_embedding=True),
                "batch": batch,
                "seq_len": seq_len,
                "vocab": vocab,
                "step_seconds": step_s,
                "tokens_per_s": tok_s,
                "flops_per_token": fpt,
                "achieved_flops": tok_s * fpt,
            }
        )
    peak = max(peaks)
    for r in rows:
        r["fraction_of_peak"] = r["achieved_flops"] / peak
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "matmul_peak_flops": peak,
        "matmul_peak_samples": peaks,
        "rows": rows,
    }
    write_json(args.out, result)
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    print("| preset | params (non-emb) | batch x len | tokens/s | achieved GFLOP/s | of peak |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['preset']} | {r['params_non_embedding'] / 1e6:.1f}M | {r['batch']}x{r['seq_len']} | {r['tokens_per_s']:,.0f} | "
            f"{r['achieved_flops'] / 1e9:.1f} | {100 * r['fraction_of_peak']:.0f}% |"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
