"""dlmkit against the reference implementations, side by side in one process (issue 16's table).

Every row times the same work twice, dlmkit's path and the reference's, on the same weights and
inputs, interleaved (A, B, A, B, ...) so both see the same machine load, and reports the ratio of
medians (dlmkit / reference; below 1 is faster).  Where the two compute the same numbers (step
probabilities, NLLs) they are compared before any timing and the largest difference is recorded.

References: the official SEDD (louaaron/Score-Entropy-Discrete-Diffusion) ``sampling.py``
predictors, from a checkout given by ``--sedd-repo`` (copied to a temporary folder, flash-attn
swapped for PyTorch SDPA in the copy; nothing of it is stored here); a minimal PyTorch forward +
flat cross-entropy for perplexity; fused AdamW for the optimiser step.

    OMP_NUM_THREADS=1 python benchmarks/anchors.py --sedd-repo PATH --out benchmarks/results/anchors_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from dlmkit.methods.base import Specials
from dlmkit.hub.model import DlmModel
from dlmkit.networks.transformer import BackboneConfig

VOCAB = 50258  # GPT-2's 50257 tokens + the mask
SPECIALS = Specials(eos=50256, pad=50256, mask=50257, sep=50256)


def race(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function over ``repeats`` interleaved rounds (after ``warmup`` rounds)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def row(path: str, medians: dict[str, float], **extra: Any) -> dict[str, Any]:
    out = {"path": path, "ratio": medians["dlmkit"] / medians["reference"], **extra}
    print(f"{path:<55} {out['ratio']:.3f}" + "".join(f"  {k}={v}" for k, v in extra.items()), flush=True)
    return out


def build(kind: str, n_layers: int, d_model: int, seq_len: int, seed: int = 0) -> DlmModel:
    torch.manual_seed(seed)
    cfg = BackboneConfig(vocab_size=VOCAB, n_layers=n_layers, d_model=d_model, n_heads=max(1, d_model // 64), seq_len=seq_len)
    return DlmModel.build(kind, cfg, SPECIALS).eval()


@torch.no_grad()
def ar_ppl(args: argparse.Namespace) -> list[dict[str, Any]]:
    """AR ``eval ppl`` (Method.nll on a batch of blocks) vs a minimal forward + flat cross-entropy."""
    rows = []
    for batch, length in [(1, 1024), (8, 128)]:
        model = build("ar", args.layers, args.d_model, length)
        net, method = model.net, model.method
        x = torch.randint(0, VOCAB - 1, (batch, length), generator=torch.Generator().manual_seed(1))
        inp = torch.cat([torch.full_like(x[:, :1], SPECIALS.eos), x[:, :-1]], 1)

        def reference():
            logits = net(inp)
            return F.cross_entropy(logits.reshape(-1, VOCAB), x.reshape(-1), reduction="none").view(batch, length).sum(1)

        def dlmkit():
            return method.nll(net, x, generator=torch.Generator())[0]

        diff = float((reference() - dlmkit()).abs().max())
        rows.append(row(f"AR eval ppl, {batch} x {length}", race({"dlmkit": dlmkit, "reference": reference}, args.repeats), max_abs_diff=diff))
    return rows


@torch.no_grad()
def masked_ppl(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Masked (mdlm) ``eval ppl`` with one t draw vs a minimal masked cross-entropy on the same masked input."""
    batch, length = 8, 128
    model = build("mdlm", args.layers, args.d_model, length)
    net, method = model.net, model.method
    x = torch.randint(0, VOCAB - 1, (batch, length), generator=torch.Generator().manual_seed(1))
    mask_id = SPECIALS.mask

    def dlmkit():
        return method.nll(net, x, generator=torch.Generator().manual_seed(2), n_samples=1)[0]

    seen = []  # the x_t of dlmkit's draw, so that the reference scores the same masked rows
    hook = net.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].clone()))
    dlmkit()
    hook.remove()
    x_t = seen[0]
    m = x_t == mask_id

    def reference():  # forward on that x_t + flat cross-entropy on its masked rows (the masking itself is free)
        logits = net(x_t)
        ce = F.cross_entropy(logits[m], x[m], reduction="none")
        return torch.zeros(batch).index_add_(0, m.nonzero()[:, 0], ce)

    return [row(f"masked eval ppl, {batch} x {length}, one t draw", race({"dlmkit": dlmkit, "reference": reference}, args.repeats))]


def adamw(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The training loop's AdamW (fused on CPU/CUDA, see train/loop.py) vs the foreach one it replaced."""
    model = build("ar", 12, 768, 1024)
    params = [p for p in model.net.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    fused = torch.optim.AdamW(params, lr=1e-4, fused=True)
    foreach = torch.optim.AdamW([p.detach().clone().requires_grad_() for p in params], lr=1e-4, foreach=True)
    for p, q in zip(params, foreach.param_groups[0]["params"]):
        q.grad = p.grad.clone()
    med = race({"dlmkit": fused.step, "reference": foreach.step}, args.repeats)
    return [row("AdamW step, small (fused; reference: foreach)", med)]


SDPA_SHIM = """
def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, seq_len, dropout_p=0.0, causal=False):
    # run-time stand-in for flash-attn: packed [(b s), 3, h, d] -> PyTorch SDPA -> [(b s), h, d]
    q, k, v = qkv.view(-1, seq_len, *qkv.shape[1:]).permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
    return out.transpose(1, 2).reshape(-1, *qkv.shape[2:])
"""


def checkout(repo: str, dest: Path) -> Path:
    """A temporary copy of a reference checkout (a work tree, or a bare git directory via git archive)."""
    import subprocess

    src = Path(repo)
    if (src / "sampling.py").is_file() or (src / "diffusion.py").is_file():
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git"))
    else:
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", f"--git-dir={src}", "archive", "HEAD"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def official_sedd(repo: str, tmp: Path) -> dict[str, Any]:
    """Import the official SEDD modules from a patched temporary copy (flash-attn -> SDPA)."""
    root = checkout(repo, tmp / "sedd")
    model_py = root / "model" / "transformer.py"
    text = model_py.read_text()
    text = text.replace("from flash_attn.flash_attn_interface import flash_attn_varlen_qkvpacked_func", SDPA_SHIM)
    model_py.write_text(text)
    sys.path.insert(0, str(root))
    import importlib

    return {name: importlib.import_module(name) for name in ("model", "sampling", "graph_lib", "noise_lib", "catsample")}


@torch.no_grad()
def sedd(args: argparse.Namespace) -> list[dict[str, Any]]:
    """SEDD (absorbing, log-linear) sampler steps at L = 128, batch 1: official ``sampling.py`` vs dlmkit.

    One random network in SEDD's layout, loaded by the official class and by dlmkit's release
    converter; step probabilities compared first; then whole runs of ``--sedd-steps`` predictor
    steps + the denoising step, timed per network call.
    """
    from safetensors.torch import save_file

    from dlmkit.hub.released import load_released
    from dlmkit.sampling.discrete import sedd_step, get_predictor

    if not args.sedd_repo:
        print("sedd: skipped (no --sedd-repo)")
        return []
    length, steps = 128, args.sedd_steps
    with tempfile.TemporaryDirectory(prefix="dlm_anchor_") as tmp_name:
        tmp = Path(tmp_name)
        off = official_sedd(args.sedd_repo, tmp)
        cfg = {"tokens": VOCAB - 1, "graph": {"type": "absorb"}, "noise": {"type": "loglinear"},
               "model": {"name": "bench", "type": "ddit", "hidden_size": args.d_model, "cond_dim": 128, "length": length,
                         "n_blocks": args.layers, "n_heads": max(1, args.d_model // 64), "scale_by_sigma": True, "dropout": 0.1}}
        torch.manual_seed(0)
        ref_net = off["model"].SEDD(cfg).eval()
        for name, p in ref_net.named_parameters():  # SEDD zero-initialises adaLN and the output: make every path count
            p.normal_(0.0, 1.0 if "embed" in name else 0.05)
        folder = tmp / "release"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(cfg))
        save_file({k: v.contiguous() for k, v in ref_net.state_dict().items()}, str(folder / "model.safetensors"))
        model, _ = load_released(folder, tokenizer=args.tokenizer)
        method, net = model.method, model.net
        graph, noise = off["graph_lib"].Absorbing(VOCAB - 1), off["noise_lib"].LogLinearNoise()
        ref_score = off["model"].utils.get_score_fn(ref_net, train=False, sampling=True)

        # equality of step probabilities at a half-masked state, t = 0.6 -> 0.6 - 1/steps
        g = torch.Generator().manual_seed(3)
        x = torch.randint(0, VOCAB - 1, (1, length), generator=g)
        x[torch.rand(1, length, generator=g) < 0.5] = VOCAB - 1
        t, dt = torch.tensor([[0.6]]), (1 - 1e-5) / steps
        diffs = {}
        for predictor in ("analytic", "euler"):
            sigma, rate = noise(t)
            score = ref_score(x, sigma.reshape(-1))
            if predictor == "analytic":
                dsig = sigma - noise(t - dt)[0]
                ref_p = graph.staggered_score(score, dsig.reshape(-1)) * graph.transp_transition(x, dsig.reshape(-1))
                removed = float(dsig)
            else:
                ref_p = F.one_hot(x, VOCAB).to(score) + dt * rate[..., None] * graph.reverse_rate(x, score)
                removed = float(dt * rate)
            ref_p = ref_p.double().clamp_min(0)
            lib = sedd_step(method.score_fn(net), method.graph, get_predictor(predictor), x, float(sigma), removed)
            diffs[predictor] = float((ref_p / ref_p.sum(-1, keepdim=True) - lib / lib.sum(-1, keepdim=True)).abs().max())

        rows = []
        for predictor in ("analytic", "euler"):
            sampler = off["sampling"].get_pc_sampler(graph, noise, (1, length), predictor, steps, denoise=True, eps=1e-5)
            gen = torch.Generator().manual_seed(0)

            def reference():
                return sampler(ref_net)

            def dlmkit():
                return method.sample(net, 1, length, steps=steps, generator=gen, sampler=predictor)

            med = race({"dlmkit": dlmkit, "reference": reference}, args.repeats)
            rows.append(row(f"SEDD {predictor} step, L={length}, batch 1", med, step_prob_max_abs_diff=diffs[predictor],
                            steps=steps, ms_per_step_reference=round(1000 * med["reference"] / (steps + 1), 2)))
        sys.path.remove(str(tmp / "sedd"))
    return rows


ROTARY_SHIM = """
import types as _types


def _apply_rotary_emb_qkv_(qkv, cos, sin):
    # run-time stand-in for flash_attn's non-interleaved rotary on q and k of [b, s, 3, h, d], in place
    half = cos.shape[-1]
    c, s_ = cos[None, :, None, :], sin[None, :, None, :]
    for j in (0, 1):
        x = qkv[:, :, j]
        x1, x2 = x[..., :half].clone(), x[..., half:2 * half].clone()
        x[..., :half] = x1 * c - x2 * s_
        x[..., half:2 * half] = x1 * s_ + x2 * c
    return qkv


flash_attn = _types.SimpleNamespace(
    layers=_types.SimpleNamespace(rotary=_types.SimpleNamespace(apply_rotary_emb_qkv_=_apply_rotary_emb_qkv_)),
    flash_attn_interface=_types.SimpleNamespace(flash_attn_varlen_qkvpacked_func=flash_attn_varlen_qkvpacked_func),
)
"""


def official_mdlm(repo: str, tmp: Path) -> dict[str, Any]:
    """Import the official MDLM ``diffusion.Diffusion`` and ``models.dit`` from a patched temporary copy.

    Patches (run time, in the copy): flash-attn's attention and rotary -> PyTorch (``SDPA_SHIM``,
    ``ROTARY_SHIM``); ``models/__init__`` imports only ``dit``.  The training-only imports of
    ``diffusion.py`` (lightning, torchmetrics, hydra, its dataloader and utils) are stubbed in
    ``sys.modules`` for the import alone: the sampler uses none of them.
    """
    import importlib
    import types

    root = checkout(repo, tmp / "mdlm")
    dit = root / "models" / "dit.py"
    text = dit.read_text().replace("import flash_attn\nimport flash_attn.layers.rotary\n", SDPA_SHIM + ROTARY_SHIM)
    dit.write_text(text)
    (root / "models" / "__init__.py").write_text("from . import dit\n")

    class LightningModule(torch.nn.Module):
        @property
        def device(self):
            return torch.device("cpu")

    stubs = {
        "lightning": types.SimpleNamespace(LightningModule=LightningModule),
        "torchmetrics": types.SimpleNamespace(aggregation=types.SimpleNamespace(MeanMetric=object), MetricCollection=dict),
        "hydra": types.SimpleNamespace(utils=None), "hydra.utils": types.SimpleNamespace(),
        "dataloader": types.SimpleNamespace(), "utils": types.SimpleNamespace(),
    }
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)  # type: ignore[arg-type]
    sys.path.insert(0, str(root))
    try:
        mods = {name: importlib.import_module(name) for name in ("models", "noise_schedule", "diffusion")}
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mods


@torch.no_grad()
def mdlm(args: argparse.Namespace) -> list[dict[str, Any]]:
    """MDLM (time-free, SUBS) ``ddpm_cache`` sampling at L = 128, batch 1: official vs dlmkit's cached sampler."""
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from dlmkit.diffusion.masked import ancestral_probs
    from dlmkit.hub.released import load_released

    if not args.mdlm_repo:
        print("mdlm: skipped (no --mdlm-repo)")
        return []
    length, steps = 128, args.mdlm_steps
    with tempfile.TemporaryDirectory(prefix="dlm_anchor_") as tmp_name:
        tmp = Path(tmp_name)
        off = official_mdlm(args.mdlm_repo, tmp)
        heads = max(1, args.d_model // 64)
        cfg = OmegaConf.create({
            "model": {"hidden_size": args.d_model, "cond_dim": 128, "length": length, "n_blocks": args.layers, "n_heads": heads,
                      "scale_by_sigma": True, "dropout": 0.1},
            "noise": {"type": "loglinear"}, "sampling": {"steps": steps, "noise_removal": True, "predictor": "ddpm_cache"},
            "loader": {"eval_batch_size": 1},
        })
        torch.manual_seed(0)
        backbone = off["models"].dit.DIT(cfg, VOCAB).eval()
        for name, p in backbone.named_parameters():  # adaLN and the output start at zero: make every path count
            p.normal_(0.0, 1.0 if "embed" in name else 0.05)
        ref = off["diffusion"].Diffusion.__new__(off["diffusion"].Diffusion)
        torch.nn.Module.__init__(ref)
        ref.backbone, ref.noise, ref.config = backbone, off["noise_schedule"].LogLinearNoise(), cfg
        ref.mask_index, ref.neg_infinity, ref.time_conditioning = VOCAB - 1, -1000000.0, False
        ref.parameterization, ref.sampler = "subs", "ddpm_cache"
        ref.eval()
        folder = tmp / "release"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({
            "architectures": ["MDLM"], "model_type": "mdlm", "vocab_size": VOCAB, "hidden_dim": args.d_model, "cond_dim": 128,
            "n_blocks": args.layers, "n_heads": heads, "model_length": length, "time_conditioning": False, "dropout": 0.1}))
        save_file({"backbone." + k: v.contiguous() for k, v in backbone.state_dict().items()}, str(folder / "model.safetensors"))
        model, _ = load_released(folder, tokenizer=args.tokenizer)
        method, net = model.method, model.net

        # equality of the step probabilities (ddpm_cache's q_xs, normalised) at a half-masked state
        g = torch.Generator().manual_seed(3)
        x = torch.randint(0, VOCAB - 1, (1, length), generator=g)
        x[torch.rand(1, length, generator=g) < 0.5] = VOCAB - 1
        t, dt = torch.tensor([[0.6]]), (1 - 1e-5) / steps
        p_x0, _ = ref._ddpm_caching_update(x, t, dt)
        q_xs = p_x0 * dt
        q_xs[:, :, VOCAB - 1] = 0.6 - dt
        q_xs = q_xs.double() / q_xs.double().sum(-1, keepdim=True)
        q_xs = torch.where((x == VOCAB - 1)[..., None], q_xs, F.one_hot(x, VOCAB).double())
        log_p = method.denoiser(net)(x, None)
        lib = ancestral_probs(log_p.double(), x, VOCAB - 1, 1 - 0.6, 1 - (0.6 - dt))
        diff = float((q_xs - lib).abs().max())

        gen = torch.Generator().manual_seed(0)
        med = race({"dlmkit": lambda: method.sample(net, 1, length, steps=steps, generator=gen, sampler="cached"),
                    "reference": lambda: ref._sample(num_steps=steps)}, args.repeats)
        sys.path.remove(str(tmp / "mdlm"))
    return [row(f"MDLM cached sampler, L={length}, batch 1, {steps} steps (vs ddpm_cache)", med, step_prob_max_abs_diff=diff)]


@torch.no_grad()
def hf_generate(args: argparse.Namespace) -> list[dict[str, Any]]:
    """AR generation with KV cache, 128 new tokens after a 16-token prompt: dlmkit's ``generate`` on a
    Hugging Face GPT-2 (random weights) vs that model's own ``generate()``; greedy outputs compared first."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from dlmkit.networks.hf_causal import HFCausalNet
    from dlmkit.sampling.autoregressive import generate

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB - 1, n_positions=1024, n_embd=args.d_model, n_layer=args.layers,
                                    n_head=max(1, args.d_model // 64))).eval()
    net = HFCausalNet(hf, 1024)
    prompt = torch.randint(0, VOCAB - 1, (1, 16), generator=torch.Generator().manual_seed(1))
    new = 128
    kw = {"max_new_tokens": new, "min_new_tokens": new, "pad_token_id": 0, "top_k": 0, "top_p": 1.0, "temperature": 1.0}
    greedy_equal = torch.equal(generate(net, prompt, new, temperature=0.0), hf.generate(prompt, do_sample=False, **kw))
    gen = torch.Generator().manual_seed(2)
    med = race({"dlmkit": lambda: generate(net, prompt, new, generator=gen),
                "reference": lambda: hf.generate(prompt, do_sample=True, **kw)}, args.repeats)
    return [row(f"AR generation with KV cache, 16 + {new} tokens, batch 1 (vs HF generate)", med, greedy_tokens_equal=greedy_equal)]


SECTIONS = {"sedd": sedd, "mdlm": mdlm, "hf_generate": hf_generate, "ar_ppl": ar_ppl, "masked_ppl": masked_ppl, "adamw": adamw}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--sedd-repo", help="checkout of louaaron/Score-Entropy-Discrete-Diffusion")
    ap.add_argument("--mdlm-repo", help="checkout of kuleshov-group/mdlm")
    ap.add_argument("--mdlm-steps", type=int, default=128, help="steps per timed MDLM run")
    ap.add_argument("--tokenizer", help="GPT-2 tokenizer folder (encoder.json + vocab.bpe); default: DLM_SHARED_DATA's")
    ap.add_argument("--sedd-steps", type=int, default=16, help="predictor steps per timed SEDD run")
    ap.add_argument("--layers", type=int, default=2, help="transformer layers of the random networks")
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="JSON file for the rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [r for name in args.sections for r in SECTIONS[name](args)]
    result = {"rows": rows, "threads": args.threads, "repeats": args.repeats, "layers": args.layers, "d_model": args.d_model,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(), "argv": sys.argv[1:]}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
