"""Sampling latency of a diffusion model against an AR model of the same size (``dlm bench latency``).

The analogue of Figure 1 of Deschenaux & Gulcehre (2024): wall time per generated sequence of
the diffusion sampler at each number of steps, against the AR model decoding the same number
of tokens with its KV cache (a horizontal line: its cost does not depend on steps).

Method: for each (sequence length, batch size) and each steps value, ``warmup`` untimed runs,
then ``repeats`` timed runs of one ``Method.sample`` call for the whole batch;
``torch.cuda.synchronize()`` brackets every timed run on a GPU. Reported: the median over the
repeats divided by the batch size (seconds per sequence), the median itself, and the number of
network evaluations (the cached MDLM sampler skips calls while no token changes, so its NFE can
be below ``steps``).

With ``max_timed_steps=N``, a run of more than N steps is timed once at N steps and scaled by
steps / N (the row says ``extrapolated_from``): every step of the SEDD samplers and of the
uncached masked sampler costs the same (one network call and one update), so this is the
measured per-step cost, not a model of it. The cached masked sampler's cost depends on how many
steps unmask a token, so it is always timed in full.

Models can be trained folders or, with ``random_init=PRESET``, randomly initialised models of a
preset's size (``tiny``, ``small``, ``medium``): latency does not depend on the weights, so no
training is needed. Their context is set to the longest requested length.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm import tqdm

from dlmkit.checks import check_output
from dlmkit.engine.config import load_config
from dlmkit.errors import DlmError
from dlmkit.hub.model import DlmModel
from dlmkit.methods.base import Specials, get_method_class
from dlmkit.networks.transformer import BackboneConfig
from dlmkit.plotting import readable_log_ticks, save_png
from dlmkit.eval.tasks.registry import ints
from dlmkit.generate import Unconditional, generate
from dlmkit.hub.load import load as load_model
from dlmkit.runtime import resolve_device


def random_model(kind: str, preset: str, seq_len: int, device: torch.device) -> Any:
    """A randomly initialised model of ``kind`` with ``preset``'s backbone and vocabulary size."""

    get_method_class(kind)
    cfg = load_config(preset)
    m = cfg.model
    backbone = BackboneConfig(vocab_size=cfg.tokenizer.vocab_size, n_layers=m.n_layers, d_model=m.d_model, n_heads=m.n_heads,
                              d_cond=m.d_cond, mlp_ratio=m.mlp_ratio, dropout=0.0, seq_len=seq_len, tie_weights=m.tie_weights)
    from dataclasses import asdict

    specials = Specials(eos=0, pad=1, mask=2, sep=3)  # the bpe tokenizer's layout
    torch.manual_seed(0)
    model = DlmModel.build(kind, backbone, specials, asdict(cfg.diffusion))
    return model.to(device).eval()


def _cached_masked(model: Any, sampler: str | None) -> bool:
    """Whether ``model`` samples with the cached masked sampler (explicitly or by its kind's default)."""
    if model.kind not in ("mdlm", "mdlm_sigma", "bd3lm"):
        return False
    default = "ancestral" if model.kind == "mdlm_sigma" else "cached"
    return (sampler or model.method.options.get("sampler") or default) == "cached"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds, the device synchronised before and after (so a GPU's
    queued kernels are counted, not only their launch)."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


@torch.no_grad()
def time_sampler(model: Any, *, batch: int, length: int, steps: int, repeats: int, warmup: int, seed: int = 0, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Median wall time of one ``sample`` call (batch x length) over ``repeats`` after ``warmup``."""
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    nfe = 0
    for _ in range(warmup):
        generate(model, Unconditional(), batch, steps, batch, gen, length=length, options=options)
    times = []
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        out = generate(model, Unconditional(), batch, steps, batch, gen, length=length, options=options)
        _sync(dev)
        times.append(time.perf_counter() - t0)
        nfe = out.nfe
    med = statistics.median(times)
    return {"seconds_median": med, "seconds_per_sequence": med / batch, "seconds_all": times, "nfe": nfe}


def latency_benchmark(
    model: str,
    *,
    ar: str | None = None,
    steps: Sequence[int] = (1, 8, 32, 128, 1024),
    lengths: Sequence[int] = (128, 1024),
    batches: Sequence[int] = (1, 32),
    repeats: int = 5,
    warmup: int = 1,
    device: str | None = None,
    random_init: str | None = None,
    ar_random: bool = True,
    sampler: str | None = None,
    max_timed_steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Rows of seconds per sequence: the diffusion model at each steps value, the AR model once.

    ``model``: a model/run folder, or with ``random_init`` a kind name (``mdlm``, ``sedd_absorb``,
    ...). ``ar``: an AR folder; with ``random_init`` and no ``ar``, a random AR model of the same
    preset is timed unless ``ar_random`` is False.
    """
    if repeats < 1 or warmup < 0:
        raise DlmError("--repeats must be >= 1 and --warmup >= 0")
    if not steps or min(steps) < 1 or not lengths or min(lengths) < 1 or not batches or min(batches) < 1:
        raise DlmError("--steps, --lengths and --batch must be positive integers")
    dev = resolve_device(device)
    if random_init:
        diff = random_model(model, random_init, max(lengths), dev)
        name = f"{model} (random init, {random_init})"
        ar_model = random_model("ar", random_init, max(lengths), dev) if ar is None and ar_random else None
        ar_name = f"ar (random init, {random_init})" if ar_model is not None else None
    else:
        diff, _ = load_model(model, dev)
        name = model
        ar_model, ar_name = None, None
    if ar is not None:
        ar_model, _ = load_model(ar, dev)
        ar_name = ar
    if diff.method.causal:
        raise DlmError(f"{name} is an AR model: give the diffusion model first and the AR model with --ar")
    if ar_model is not None and not ar_model.method.causal:
        raise DlmError(f"--ar {ar_name}: a {ar_model.kind} model is not autoregressive")
    too_long = [L for L in lengths if L > diff.seq_len or (ar_model is not None and L > ar_model.seq_len)]
    if too_long:
        raise DlmError(f"lengths {too_long} exceed a model's context ({diff.seq_len}{'' if ar_model is None else f', AR {ar_model.seq_len}'}); use shorter --lengths or --random-init")
    options = {"sampler": sampler} if sampler else {}
    if max_timed_steps is not None:
        if max_timed_steps < 1:
            raise DlmError("--max-timed-steps must be >= 1")
        if _cached_masked(diff, sampler):
            raise DlmError("--max-timed-steps: the cached masked sampler's cost is not linear in steps; time it in full (or --sampler ancestral)")
    params = sum(p.numel() for p in diff.net.parameters())
    rows = []
    grid = [(L, b) for L in lengths for b in batches]
    bar = tqdm(total=len(grid) * (len(steps) + (ar_model is not None)), desc="latency", disable=not progress, leave=False)
    for L, b in grid:
        measured: dict[int, dict[str, Any]] = {}  # one timing of max_timed_steps serves every longer run
        for s in steps:
            timed = s if max_timed_steps is None else min(s, max_timed_steps)
            if timed not in measured:
                measured[timed] = time_sampler(diff, batch=b, length=L, steps=timed, repeats=repeats, warmup=warmup, options=options)
            r = measured[timed]
            if timed < s:
                scale = s / timed
                r = {**r, "seconds_median": r["seconds_median"] * scale, "seconds_per_sequence": r["seconds_per_sequence"] * scale,
                     "seconds_all": [t * scale for t in r["seconds_all"]], "nfe": s, "extrapolated_from": timed}
            rows.append({"model": name, "kind": diff.kind, "length": L, "batch": b, "steps": s, **r})
            bar.update()
        if ar_model is not None:
            r = time_sampler(ar_model, batch=b, length=L, steps=0, repeats=repeats, warmup=warmup)
            rows.append({"model": ar_name, "kind": "ar", "length": L, "batch": b, "steps": None, "kv_cache": True, **r})
            bar.update()
    bar.close()
    return {
        "latency": {
            "rows": rows,
            "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "repeats": repeats,
            "warmup": warmup,
            "params": params,
            "ar_params": sum(p.numel() for p in ar_model.net.parameters()) if ar_model is not None else None,
            "sampler": sampler or "default",
            "max_timed_steps": max_timed_steps,
        }
    }


def plot_latency(result: dict[str, Any], path: str) -> str:
    """PNG like the paper's Figure 1: seconds per sequence vs steps, AR as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["latency"]["rows"] if "latency" in result else result["rows"]
    fig, ax = plt.subplots(figsize=(6, 4))
    combos = sorted({(r["length"], r["batch"]) for r in rows})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (L, b) in enumerate(combos):
        c = colors[i % len(colors)]
        d = sorted((r for r in rows if r["length"] == L and r["batch"] == b and r["steps"] is not None), key=lambda r: r["steps"])
        if d:
            ax.plot([r["steps"] for r in d], [r["seconds_per_sequence"] for r in d], "o-", color=c, label=f"{d[0]['kind']} L={L} B={b}")
        a = [r for r in rows if r["length"] == L and r["batch"] == b and r["steps"] is None]
        if a:
            ax.axhline(a[0]["seconds_per_sequence"], color=c, ls="--", label=f"AR (KV cache) L={L} B={b}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("seconds per sequence")
    ax.set_title(f"Sampling latency ({result.get('latency', result).get('device_name', '')})")
    readable_log_ticks(ax, "xy")  # plain 2, 5, 1,000 instead of matplotlib's 2x10^0
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)  # beside the axes, off the curves
    fig.tight_layout()
    save_png(fig, path, bbox_inches="tight")
    return path


def render_latency_table(result: dict[str, Any]) -> str:
    lat = result["latency"] if "latency" in result else result
    lines = ["| model | kind | length | batch | steps | NFE | s / sequence | s / batch (median) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in lat["rows"]:
        steps = "-" if r["steps"] is None else (f"{r['steps']} (x{r['steps'] // r['extrapolated_from']} of {r['extrapolated_from']})" if r.get("extrapolated_from") else r["steps"])
        lines.append(f"| {r['model']} | {r['kind']} | {r['length']} | {r['batch']} | {steps} | {r['nfe']} | {r['seconds_per_sequence']:.4g} | {r['seconds_median']:.4g} |")
    lines.append(f"\nDevice: {lat['device_name']} ({lat['threads']} threads); median of {lat['repeats']} runs after {lat['warmup']} warm-up.")
    return "\n".join(lines)


def run_task(args: Any) -> dict[str, Any]:
    """``dlm bench latency``: the timing grid (and its plot with ``--plot``)."""
    if args.plot:
        check_output(args.plot, "--plot")
    result = latency_benchmark(args.model, ar=args.ar, steps=ints(args.steps), lengths=ints(args.lengths), batches=ints(args.batch),
                               repeats=args.repeats, warmup=args.warmup, device=args.device, random_init=args.random_init,
                               ar_random=not args.no_ar, sampler=args.sampler, max_timed_steps=args.max_timed_steps,
                               progress=not args.no_progress)
    if args.plot:
        result["plot"] = plot_latency(result, args.plot)
    return result


def report_section(entries: list[dict[str, Any]], stem: Path) -> tuple[list[str], list[str]]:
    """One section per latency result, each with its plot."""
    parts: list[str] = []
    plots: list[str] = []
    for k, lat in enumerate(entries):
        p = Path(plot_latency(lat, str(Path(f"{stem}_latency{k or ''}.png"))))
        plots.append(str(p))
        parts += ["## Sampling latency" + (f" ({k + 1})" if len(entries) > 1 else ""), "", render_latency_table(lat), "", f"![latency]({p.name})", ""]
    return parts, plots
