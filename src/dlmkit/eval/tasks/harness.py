"""lm-evaluation-harness adapter: any dlmkit model as the lm-eval model ``dlmkit``.

``DlmkitLM`` is registered with ``@register_model("dlmkit")`` when lm-eval (the ``eval`` extra)
is installed and this module imported; ``dlm eval harness`` does that and runs offline on the
shipped tasks (``dlmkit/eval/lm_eval_tasks``: ``dlm_cloze``, ``dlm_choice``, package data read
by :func:`shipped_dataset`) and ``--include-path`` folders, other tasks from lm-eval's registry.
The README ("lm-eval-harness") shows lm-eval's own command and ``simple_evaluate``.

Requests:

* ``loglikelihood``: ``-Method.nll`` of ``context + continuation`` with the context as
  ``clean_mask``: exact for AR, a lower bound (ELBO, ``n_samples`` draws; ``mdlm`` integrates the
  noise level exactly) for diffusion kinds, each request seeded from ``seed`` and its tokens,
  standard errors kept. No padding; a context that does not fit is cut from the left; lm-eval's
  tokenisation convention (trailing context spaces move to the continuation).
* ``is_greedy``: AR, every continuation token is the next-token argmax; diffusion, the one-step
  denoising argmax of the fully noised continuation (context clean) equals it.
* ``loglikelihood_rolling``: chunks of ``seq_len - rolling_context`` tokens, each given up to
  ``rolling_context`` earlier tokens (default 0: disjoint blocks as ``dlm eval ppl``).
* ``generate_until``: the sampler continues the prompt (a prefix condition) by ``max_gen_toks``
  tokens, cut at the first stop string.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from tqdm import tqdm

from dlmkit.errors import DlmError
from dlmkit.eval.metrics.optional import import_eval_dependency
from dlmkit.generate import Spans, Unconditional, generate
from dlmkit.hub.load import load as load_model
from dlmkit.sampling.conditioning import Condition
from dlmkit.runtime import resolve_device

try:  # lm-eval is optional (the eval extra); the scorer below works without it
    from lm_eval.api.model import LM as _LMBase
    from lm_eval.api.registry import register_model as _register_model
except ImportError:  # pragma: no cover - exercised only without the extra
    _LMBase = object  # type: ignore[assignment,misc]
    _register_model = None

TASKS_DIR = Path(__file__).resolve().parents[1] / "lm_eval_tasks"
LOCAL_TASKS = ("dlm_cloze", "dlm_choice")


def _as_bool(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")


class DlmkitScorer:
    """The request computations of the adapter, on a loaded model (no lm-eval needed)."""

    def __init__(self, model: Any, tokenizer: Any, *, n_samples: int = 8, seed: int = 0, steps: int = 128,
                 rolling_context: int = 0, max_gen_toks: int = 64, batch_size: int = 16, progress: bool = False):
        if model.method.data_format != "lm":
            raise DlmError(f"a {model.kind} model is a sequence-to-sequence model: lm-eval tasks do not apply")
        if n_samples < 1:
            raise DlmError("n_samples must be at least 1")
        self.model, self.tokenizer = model, tokenizer
        self.method, self.net = model.method, model.net
        self.L = model.seq_len
        if not 0 <= rolling_context < self.L:
            raise DlmError(f"rolling_context must be in [0, {self.L})")
        self.n_samples, self.seed, self.steps = n_samples, seed, steps
        self.rolling_context, self.max_gen_toks, self.batch_size = rolling_context, max_gen_toks, batch_size
        self.progress = progress
        # a time-free diffusion denoiser (mdlm) has its noise integral done exactly; AR ignores it
        self.estimator = "count" if self.method.nll_is_bound and not self.method.time_conditioned else "mc"
        self.ll_stderr: list[float] = []
        self.stats = {"requests": 0, "scored_tokens": 0, "truncated_contexts": 0, "seconds": 0.0}

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _gen(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed)

    def _request_gen(self, tokens: Sequence[int]) -> torch.Generator:
        """A generator seeded from ``seed`` and the request's tokens: independent draws per request."""
        key = zlib.crc32(" ".join(map(str, tokens)).encode(), self.seed & 0xFFFFFFFF)
        return torch.Generator(device=self.device).manual_seed(key)

    # -- tokenisation -------------------------------------------------------------------------
    def split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tokenizer.encode(context + continuation)
        ctx = self.tokenizer.encode(context) if context else []
        if whole[: len(ctx)] == ctx:
            cont = whole[len(ctx) :]
        else:  # the tokenizer merged across the boundary: tokenise apart
            cont = self.tokenizer.encode(continuation)
        if not cont:
            cont = self.tokenizer.encode(continuation)
        if len(ctx) + len(cont) > self.L:
            self.stats["truncated_contexts"] += 1
            cont = cont[-self.L :]
            ctx = ctx[len(ctx) - (self.L - len(cont)) :] if self.L > len(cont) else []
        return ctx, cont

    # -- scoring --------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, ctx: Sequence[int], cont: Sequence[int]) -> float:
        """log p(cont | ctx): exact (AR) or minus the Monte-Carlo bound (diffusion)."""
        return self.score_batch([(list(ctx), list(cont))])[0]

    @torch.no_grad()
    def score_batch(self, items: list[tuple[list[int], list[int]]]) -> list[float]:
        """log p(cont | ctx) of items that all have the same total length."""
        x = torch.tensor([c + d for c, d in items], dtype=torch.long, device=self.device)
        pos = torch.arange(x.shape[1], device=self.device)[None]
        clean = pos < torch.tensor([len(c) for c, _ in items], device=self.device)[:, None]
        nll, se = self.method.nll(self.net, x, generator=self._request_gen(x.reshape(-1).tolist() + [len(items[0][0])]),
                                  n_samples=self.n_samples, clean_mask=clean, estimator=self.estimator)
        if self.method.nll_is_bound:
            self.ll_stderr.extend(float(v) for v in se.cpu())
        self.stats["scored_tokens"] += sum(len(d) for _, d in items)
        return [-float(v) for v in nll.cpu()]

    @torch.no_grad()
    def is_greedy(self, ctx: list[int], cont: list[int]) -> bool:
        x = torch.tensor([ctx + cont], dtype=torch.long, device=self.device)
        n_ctx = len(ctx)
        method = self.method
        if method.causal:
            inp = torch.cat([torch.full_like(x[:, :1], method.specials.eos), x[:, :-1]], dim=1)
            pred = self.net(inp).argmax(-1)
            return bool((pred[0, n_ctx:] == x[0, n_ctx:]).all())
        pred = diffusion_one_step_argmax(method, self.net, x, n_ctx, self._gen())
        if pred is None:
            return False
        return bool((pred[0, n_ctx:] == x[0, n_ctx:]).all())

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        start = time.perf_counter()
        split = [self.split(c, d) for c, d in pairs]
        out: list[tuple[float, bool] | None] = [None] * len(split)
        if self.method.causal:  # exact and deterministic: batch requests of equal length
            groups: dict[int, list[int]] = {}
            for i, (c, d) in enumerate(split):
                groups.setdefault(len(c) + len(d), []).append(i)
            batches = [idx[k : k + self.batch_size] for idx in groups.values() for k in range(0, len(idx), self.batch_size)]
        else:  # one request per call, each with its own seed (see _request_gen)
            batches = [[i] for i in range(len(split))]
        for idx in tqdm(batches, desc="loglikelihood", disable=not self.progress, leave=False):
            lls = self.score_batch([split[i] for i in idx])
            for i, ll in zip(idx, lls):
                out[i] = (ll, self.is_greedy(*split[i]))
        self.stats["requests"] += len(pairs)
        self.stats["seconds"] += time.perf_counter() - start
        return out  # type: ignore[return-value]

    def rolling_windows(self, n: int) -> list[tuple[int, int, int]]:
        """(context start, prediction start, end) windows covering tokens 0..n once each."""
        pred_len = self.L - self.rolling_context
        windows, start = [], 0
        while start < n:
            end = min(start + pred_len, n)
            ctx_start = max(0, end - self.L) if end == n else max(0, start - self.rolling_context)
            windows.append((ctx_start, start, end))
            start = end
        return windows

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        start = time.perf_counter()
        out = []
        for text in tqdm(texts, desc="rolling", disable=not self.progress, leave=False):
            ids = self.tokenizer.encode(text)
            total = 0.0
            for a, b, e in self.rolling_windows(len(ids)):
                total += self.score(ids[a:b], ids[b:e])
            out.append(total)
        self.stats["requests"] += len(texts)
        self.stats["seconds"] += time.perf_counter() - start
        return out

    @torch.no_grad()
    def generate(self, context: str, until: Sequence[str] = (), max_gen_toks: int | None = None, greedy: bool = True) -> str:
        new = min(max_gen_toks or self.max_gen_toks, self.L - 1)
        ctx = self.tokenizer.encode(context) if context else []
        ctx = ctx[max(0, len(ctx) - (self.L - new)) :]
        length = len(ctx) + new
        options: dict[str, Any] = {}
        if self.method.causal and greedy:
            options["temperature"] = 0.0
        prompt = Spans(Condition.from_spans(length, prefix=ctx)) if ctx else Unconditional()
        out = generate(self.model, prompt, 1, self.steps, 1, self.seed, length=length, options=options, autocast=False)
        text = self.tokenizer.decode(out.tokens[0, len(ctx) :].tolist())
        for stop in until or ():
            if stop and stop in text:
                text = text[: text.index(stop)]
        return text


@torch.no_grad()
def diffusion_one_step_argmax(method: Any, net: Any, x: torch.Tensor, n_ctx: int, generator: torch.Generator) -> torch.Tensor | None:
    """argmax of p(x0 | x_t) with positions >= n_ctx noised to t = 1 (see the module docstring).

    Uses the kind's declared denoiser (mdlm: SUBS x0 log-probabilities; SEDD: Tweedie denoising of
    the concrete score) on its :meth:`~dlmkit.methods.base.Method.fully_noised` state; ``None`` for
    a kind without one.
    """
    if not method.has_denoiser:
        return None
    x_t, sigma = method.fully_noised(x, n_ctx, generator)
    clean = torch.arange(x.shape[1], device=x.device)[None] < n_ctx
    return method.x0_log_probs(net, clean)(x_t, sigma).argmax(-1)


class DlmkitLM(_LMBase):  # type: ignore[misc,valid-type]
    """lm-eval model ``dlmkit``: ``--model_args pretrained=RUN[,n_samples=K,seed=S,steps=T,device=D,...]``."""

    def __init__(self, pretrained: str | None = None, device: str | None = None, n_samples: int | str = 8, seed: int | str = 0,
                 steps: int | str = 128, rolling_context: int | str = 0, max_gen_toks: int | str = 64, batch_size: int | str = 16,
                 progress: bool | str = False, model: Any = None, tokenizer: Any = None, **_: Any):
        if _register_model is None:
            raise DlmError("the lm-eval adapter needs lm-eval: pip install 'dlmkit[eval]'")
        super().__init__()
        if model is None:
            if not pretrained:
                raise DlmError("model_args need pretrained=MODEL_OR_RUN_FOLDER")
            if device and str(device).startswith("cuda") and not torch.cuda.is_available():
                device = None  # lm-eval's CLI passes its default "cuda" even on a CPU-only machine
            model, tokenizer = load_model(pretrained, resolve_device(device))
        self.name = str(pretrained or model.kind)
        bs = 16 if str(batch_size).startswith("auto") else int(batch_size)
        self.scorer = DlmkitScorer(model, tokenizer, n_samples=int(n_samples), seed=int(seed), steps=int(steps),
                                   rolling_context=int(rolling_context), max_gen_toks=int(max_gen_toks), batch_size=bs,
                                   progress=_as_bool(progress))

    @property
    def device(self) -> torch.device:  # lm-eval reads it
        return self.scorer.device

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.scorer.loglikelihood([tuple(r.args[:2]) for r in requests])

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        return self.scorer.loglikelihood_rolling([r.args[0] for r in requests])

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out = []
        for r in requests:
            context, kwargs = r.args[0], dict(r.args[1] or {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            greedy = not _as_bool(kwargs.get("do_sample", False)) or float(kwargs.get("temperature", 1.0)) == 0.0
            out.append(self.scorer.generate(context, until, kwargs.get("max_gen_toks"), greedy=greedy))
        return out


# registered by the importable module only: `python -m dlmkit.eval.tasks.harness` runs a second copy
# as __main__, which hands over to the imported one (one class per lm-eval name)
if _register_model is not None and __name__ != "__main__":
    DlmkitLM = _register_model("dlmkit")(DlmkitLM)


# ---- running tasks offline -----------------------------------------------------------------


def shipped_dataset(data_file: str, **_: Any) -> Any:
    """lm-eval ``custom_dataset`` of the shipped tasks: ``TASKS_DIR/data_file`` as the test split.

    Read from the package folder, not the working directory; other keyword arguments (lm-eval
    passes the task metadata and model arguments) are ignored.
    """
    import datasets

    path = TASKS_DIR / data_file
    if not path.is_file():
        raise DlmError(f"shipped task data {path} not found (is dlmkit installed with its package data?)")
    return datasets.load_dataset("json", data_files={"test": str(path)})


@contextlib.contextmanager
def _quiet_git() -> Iterator[None]:
    """lm-eval asks ``git describe`` for a commit hash and lets git print ``fatal: not a git
    repository`` outside one: the same question, with git's complaints dropped."""
    import subprocess

    import lm_eval.evaluator as evaluator

    original = evaluator.get_git_commit_hash

    def quiet() -> str | None:
        try:
            out = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=False)
        except OSError:
            return None
        return (out.stdout.strip() or None) if out.returncode == 0 else None

    evaluator.get_git_commit_hash = quiet
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = original


def _localise_tasks(folders: Sequence[Path], dest: Path) -> None:
    """Copy task YAMLs to ``dest`` with relative ``data_files`` made absolute (against each YAML)."""
    import yaml

    for n, folder in enumerate(folders):
        if not folder.is_dir():
            raise DlmError(f"--include-path {folder}: no such folder")
        for src in folder.rglob("*.yaml"):
            text = src.read_text(encoding="utf-8")
            try:
                cfg = yaml.safe_load(text)
            except yaml.YAMLError:
                cfg = None  # lm-eval's own tags (!function) are not safe_load-able: copy as is
            target = dest / f"{n}" / src.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            files = (cfg or {}).get("dataset_kwargs", {}).get("data_files") if isinstance(cfg, dict) else None
            if files is not None:

                def absolute(p: Any) -> Any:
                    if isinstance(p, str) and "://" not in p and not Path(p).is_absolute():
                        return str((src.parent / p).resolve())
                    if isinstance(p, list):
                        return [absolute(q) for q in p]
                    return p

                cfg["dataset_kwargs"]["data_files"] = {k: absolute(v) for k, v in files.items()} if isinstance(files, dict) else absolute(files)
                target.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
            else:
                shutil.copyfile(src, target)
            for extra in src.parent.glob("*.py"):  # utils.py next to task YAMLs
                shutil.copyfile(extra, target.parent / extra.name)


def run_harness(
    model: str,
    tasks: Sequence[str],
    *,
    include_path: Sequence[str] = (),
    limit: int | float | None = None,
    n_samples: int = 8,
    seed: int = 0,
    steps: int = 128,
    num_fewshot: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run lm-eval tasks on a dlmkit model; returns per-task metrics and throughput."""
    import_eval_dependency("lm_eval")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if not tasks:
        raise DlmError("--tasks needs at least one task")
    lm = DlmkitLM(pretrained=model, device=device, n_samples=n_samples, seed=seed, steps=steps, batch_size=batch_size, progress=progress)
    with tempfile.TemporaryDirectory(prefix="dlm_tasks_") as tmp:
        _localise_tasks([TASKS_DIR, *[Path(p) for p in include_path]], Path(tmp))
        tm = TaskManager(include_path=tmp, include_defaults=False)
        missing = [t for t in tasks if t not in tm.all_tasks]
        if missing:  # standard tasks: index lm-eval's own registry too (slow; data from the hub cache)
            tm = TaskManager(include_path=tmp, include_defaults=True)
            unknown = [t for t in tasks if t not in tm.all_tasks]
            if unknown:
                raise DlmError(f"unknown lm-eval task(s): {', '.join(unknown)} (local: {', '.join(LOCAL_TASKS)}; or give --include-path)")
        start = time.perf_counter()
        try:
            with _quiet_git():
                res = simple_evaluate(model=lm, tasks=list(tasks), task_manager=tm, limit=limit, num_fewshot=num_fewshot,
                                      bootstrap_iters=0, log_samples=False, random_seed=seed, numpy_random_seed=seed,
                                      torch_random_seed=seed, fewshot_random_seed=seed)
        except (FileNotFoundError, ConnectionError) as e:
            raise DlmError(f"lm-eval could not load a task's data offline ({e}); run once with network access") from None
        seconds = time.perf_counter() - start
    scorer = lm.scorer
    results = {}
    for task, metrics in (res or {}).get("results", {}).items():
        results[task] = {k.split(",")[0]: v for k, v in metrics.items() if isinstance(v, (int, float)) and "stderr" not in k}
    return {
        "harness": {
            "model": model,
            "kind": scorer.model.kind,
            "tasks": list(tasks),
            "results": results,
            "n_samples": n_samples if scorer.method.nll_is_bound else 0,
            "bound": scorer.method.nll_is_bound,
            "limit": limit,
            "seed": seed,
            "requests": scorer.stats["requests"],
            "scored_tokens": scorer.stats["scored_tokens"],
            "truncated_contexts": scorer.stats["truncated_contexts"],
            "seconds": seconds,
            "loglikelihood_stderr_rms": math.sqrt(sum(v * v for v in scorer.ll_stderr) / len(scorer.ll_stderr)) if scorer.ll_stderr else None,
            "elbo_tokens_per_s": scorer.stats["scored_tokens"] * max(1, n_samples if scorer.method.nll_is_bound else 1) / scorer.stats["seconds"] if scorer.stats["seconds"] > 0 else None,
            "lm_eval_version": _lm_eval_version(),
        }
    }


def _lm_eval_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return "unknown"


def render_harness_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per (model, task) with accuracy and perplexity where present."""
    lines = ["| model | kind | task | acc | acc_norm | ppl | note |", "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        note = f"log-lik. lower bound, {r['n_samples']} MC samples" if r.get("bound") else "exact"
        for task, m in r["results"].items():
            def f(key: str) -> str:
                v = m.get(key)
                return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}" if key != "perplexity" else f"{v:.2f}"
            lines.append(f"| {r['model']} | {r['kind']} | {task} | {f('acc')} | {f('acc_norm')} | {f('perplexity')} | {note} |")
    return "\n".join(lines)


def run_task(args: Any) -> dict[str, Any]:
    """``dlm eval harness``: the tasks' metrics for one model."""
    limit = None if args.limit is None else (float(args.limit) if "." in args.limit else int(args.limit))
    return run_harness(args.model, [t for t in args.tasks.split(",") if t], include_path=args.include_path or [], limit=limit,
                       n_samples=args.n_samples, seed=args.seed, steps=args.steps, num_fewshot=args.num_fewshot,
                       batch_size=args.batch_size, device=args.device, progress=not args.no_progress)


def render_result(result: dict[str, Any]) -> str:
    return render_harness_table([result["harness"]])


def report_section(entries: list[dict[str, Any]], stem: Any) -> tuple[list[str], list[str]]:
    return ["## Benchmarks (lm-eval-harness)", "", "Diffusion log-likelihoods are Monte-Carlo ELBO lower bounds; AR log-likelihoods are exact.", "",
            render_harness_table(entries), ""], []


def lm_eval_cli(argv: Sequence[str] | None = None) -> int:
    """lm-eval's CLI with the model ``dlmkit`` registered and the shipped tasks on the include path.

    ``tasks-dir`` alone prints the folder of the shipped task files instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["tasks-dir"]:
        print(TASKS_DIR)
        return 0
    if _register_model is None:
        print("error: lm-eval is not installed: pip install 'dlmkit[eval]'", file=sys.stderr)
        return 2
    from lm_eval.__main__ import cli_evaluate

    user: list[Path] = []  # lm-eval takes one --include_path: the user's and the shipped tasks go in one copy
    for i, a in enumerate(args):
        if a == "--include_path" and i + 1 < len(args):
            user.append(Path(args.pop(i + 1)))
            args.pop(i)
            break
        if a.startswith("--include_path="):
            user.append(Path(args.pop(i).split("=", 1)[1]))
            break
    with tempfile.TemporaryDirectory(prefix="dlm_tasks_") as tmp:
        try:
            _localise_tasks([TASKS_DIR, *user], Path(tmp))
        except DlmError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        sys.argv = [sys.argv[0], *args, "--include_path", tmp]
        with _quiet_git():
            cli_evaluate()
    return 0


if __name__ == "__main__":  # python -m dlmkit.eval.tasks.harness [run] ARGS: lm-eval's CLI with `dlmkit` registered
    from dlmkit.eval.tasks.harness import lm_eval_cli as _cli

    sys.exit(_cli())
