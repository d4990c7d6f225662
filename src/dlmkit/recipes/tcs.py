"""Target concrete score (TCS) distillation of an autoregressive teacher into a discrete diffusion student:
the recipe (the target itself: :mod:`dlmkit.diffusion.tcs`).

Why this target is right for absorbing (masked) students: masking does not look at token
values, so given the other clean tokens x0_-i and the noisy x_t, the clean token at a masked
position i is distributed as p(y | x0_-i). The one-hot data target e_{x0_i} and p(. | x0_-i)
therefore have the same conditional expectation, and both the masked cross-entropy and score
entropy are linear in the target: replacing the one-hot by the teacher's conditional keeps the
minimiser (the teacher's own denoiser) and removes the sampling noise of x0_i.

* ``mdlm``: KL(p(. | x0_-i) || p_theta(x0_i | x_t)) at the masked positions, weighted like the
  NELBO (sigma_bar'(t) / (e^sigma_bar - 1)).
* ``sedd_absorb``: score entropy (``score_entropy``) against the target ratios
  p_t(x_t^{i<-y}) / p_t(x_t) = p(y | x0_-i) / (e^sigma_bar - 1) at masked positions, weighted by
  sigma_bar'(t) as in DSE.

The loss is alpha * TCS + (1 - alpha) * data (the kind's own loss on the same x_t).
Not supported: ``sedd_uniform`` (every position is noised, so targets are needed everywhere and
the target ratio mixes the teacher's conditional through the uniform kernel) and the continuous
``diffuseq`` kind (Gaussian noise on all embeddings at once has no single-site concrete score,
and it is a seq2seq model while the teacher is an unconditional LM).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dlmkit.checks import check_config
from dlmkit.diffusion.graphs import Absorbing
from dlmkit.diffusion.masked import masked_nll_terms
from dlmkit.diffusion.score_entropy import denoising_score_entropy, score_entropy
from dlmkit.diffusion.tcs import ESTIMATORS, Target, estimate_target
from dlmkit.engine.config import RunConfig, apply_run_options, load_config
from dlmkit.engine.distributed import init_distributed
from dlmkit.engine.loop import resume_config
from dlmkit.hub.checkpoint import find_run_config
from dlmkit.hub.teachers import Teacher, load_teacher
from dlmkit.errors import DlmError
from dlmkit.methods.discrete_common import training_times
from dlmkit.recipes.pretrain import Trainer, load_start

SUPPORTED_KINDS = ("mdlm", "sedd_absorb")


class TCSLoss:
    """``loss_fn(method, net, x0, generator)`` for the training loop: alpha * TCS + (1 - alpha) * data.

    Keeps the teacher's time and cost; its metrics (per step) are ``tcs``, ``data``,
    ``teacher_s``, ``teacher_share`` (teacher time / step time, running), ``teacher_rows_per_target``
    and ``teacher_tok_per_target``.
    """

    def __init__(self, teacher: Teacher, *, estimator: str = "topk", k: int = 16, alpha: float = 1.0, batch: int = 64):
        if estimator not in ESTIMATORS:
            raise DlmError(f"unknown TCS estimator '{estimator}' (choose: {', '.join(ESTIMATORS)})")
        if not 0.0 <= alpha <= 1.0:
            raise DlmError(f"distill.tcs.alpha must lie in [0, 1], got {alpha}")
        self.teacher, self.estimator, self.k, self.alpha, self.batch = teacher, estimator, k, alpha, batch
        self.teacher_seconds = 0.0
        self.total_seconds = 0.0
        self._last_start: float | None = None
        self.targets = 0

    def _sync(self) -> None:
        if self.teacher.device.type == "cuda":
            torch.cuda.synchronize(self.teacher.device)

    def target(self, x0: Tensor, positions: Tensor) -> tuple[Target, dict[str, float]]:
        rows0, tok0 = self.teacher.forward_rows, self.teacher.forward_tokens
        self._sync()
        t0 = time.perf_counter()
        tgt = estimate_target(self.teacher, x0, positions, self.estimator, k=self.k, batch=self.batch)
        self._sync()
        dt = time.perf_counter() - t0
        self.teacher_seconds += dt
        n = max(1, len(tgt.b))
        self.targets += len(tgt.b)
        return tgt, {
            "teacher_s": dt,
            "teacher_rows_per_target": (self.teacher.forward_rows - rows0) / n,
            "teacher_tok_per_target": (self.teacher.forward_tokens - tok0) / n,
        }

    def __call__(self, method: Any, net: nn.Module, x0: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        now = time.perf_counter()
        if self._last_start is not None:
            self.total_seconds += now - self._last_start  # the previous step, backward and optimiser included
        self._last_start = now
        kind = method.kind
        if kind not in SUPPORTED_KINDS:
            raise DlmError(f"TCS distillation supports the {', '.join(SUPPORTED_KINDS)} students, not '{kind}'")
        t = training_times(method.options, x0.shape[0], generator)
        sigma = method.schedule.total(t)
        x_t = Absorbing(method.vocab_size, method.specials.mask).sample_forward(x0, sigma, generator)
        masked = x_t == method.specials.mask
        metrics: dict[str, float] = {}
        tgt = None
        if self.alpha > 0:
            tgt, metrics = self.target(x0, masked)
        L = x0.shape[1]
        if kind == "mdlm":
            log_p = method.denoiser(net)(x_t, sigma)  # [B, L, V]
            weight = (method.schedule.rate(t) / torch.expm1(sigma)).to(log_p.dtype)
            data = (weight * masked_nll_terms(log_p, x0, x_t, method.specials.mask)).mean() / L
            tcs = log_p.new_zeros(())
            if tgt is not None:
                logq = tgt.logq.to(log_p.device)
                lp = log_p[tgt.b.to(log_p.device), tgt.i.to(log_p.device)]
                if tgt.ids is not None:
                    lp = lp.gather(-1, tgt.ids.to(log_p.device))
                q = logq.exp()
                kl = torch.where(q > 0, q * (logq - lp.float()), torch.zeros_like(q)).sum(-1)  # [N]
                per_seq = torch.zeros(x0.shape[0], dtype=kl.dtype, device=kl.device).index_add(0, tgt.b.to(kl.device), kl)
                tcs = (weight.float() * per_seq).mean() / L
        else:  # sedd_absorb
            log_score = method.score_fn(net)(x_t, sigma)
            graph = method.graph
            rate = method.schedule.rate(t).to(log_score.dtype)
            data = (rate * denoising_score_entropy(log_score, x0, x_t, sigma, graph).sum(-1)).mean() / L
            tcs = log_score.new_zeros(())
            if tgt is not None:
                ratio = torch.zeros(log_score.shape, dtype=torch.float32, device=log_score.device)
                q = tgt.dense(log_score.shape[-1]).to(log_score.device).exp()
                b, i = tgt.b.to(log_score.device), tgt.i.to(log_score.device)
                ratio[b, i] = q / torch.expm1(sigma.float()).to(log_score.device)[b, None]
                per_pos = score_entropy(log_score.float(), ratio, x_t, graph)
                tcs = (rate.float() * per_pos.sum(-1)).mean() / L
        loss = self.alpha * tcs + (1.0 - self.alpha) * data if self.alpha < 1 else tcs
        metrics.update(tcs=float(tcs.detach()), data=float(data.detach()))
        if self.total_seconds > 0:
            metrics["teacher_share"] = self.teacher_seconds / (self.total_seconds + (time.perf_counter() - now))
        return loss, metrics


# ---- runs ----------------------------------------------------------------------------------


def _student_config(student: str):
    """The run config for ``--student``: a preset or YAML (from scratch), or a model folder to start
    from (a dlmkit run or checkpoint, or a released SEDD / MDLM folder) as ``model.init_from``.

    A student run keeps its own training settings (its ``config.yaml``); any other folder gets the
    defaults, with the architecture taken from the checkpoint when the run starts.
    """
    path = Path(student)
    if not path.is_dir():
        return load_config(student)
    run_cfg = find_run_config(path)
    cfg = load_config(str(run_cfg)) if run_cfg is not None else RunConfig()
    cfg.model.init_from = str(path)
    return cfg


def distill_tcs(
    *, teacher: str | None = None, student: str | None = None, data: list[str] | None = None, out_dir: str | None = None,
    estimator: str | None = None, top_k: int | None = None, alpha: float | None = None, kind: str | None = None,
    overrides: list[str] | tuple[str, ...] = (), resume: str | None = None, progress: bool = True,
    teacher_obj: Teacher | None = None,
) -> dict[str, Any]:
    """Train (or resume) a TCS-distilled diffusion student through the shared training loop.

    ``student``: a preset/YAML (from scratch; an ``ar`` preset becomes ``kind`` or ``mdlm``), or a
    model to improve: a dlmkit diffusion run or checkpoint, or a released SEDD / MDLM folder (its
    architecture and weights, see ``model.init_from``; its tokenizer must be the teacher's).
    The student is given the teacher's tokenizer, written to ``OUT/teacher_tokenizer``. Returns the
    training summary plus the teacher's cost and share of the time. ``teacher_obj`` injects an
    already built :class:`Teacher` (tests, benchmarks) in place of loading ``teacher``.
    """
    start = None
    if resume:
        cfg = resume_config(resume, list(overrides))
    else:
        if not student:
            raise DlmError("give --student (a preset, a YAML file, a dlmkit diffusion run or a released SEDD / MDLM folder)")
        cfg = _student_config(student)
        if cfg.model.init_from:
            start = load_start(cfg)  # fills cfg.model with the student's kind and shape
            if kind and kind != cfg.model.kind:
                raise DlmError(f"--kind {kind}: the student {student} is a {cfg.model.kind} model")
        elif cfg.model.kind == "ar" or kind:
            cfg.model.kind = kind or "mdlm"
        apply_run_options(cfg, overrides, data, out_dir)
    check_config(cfg)
    d = cfg.distill
    if teacher:
        d.teacher = teacher
    if estimator:
        d.tcs.estimator = estimator
    if top_k is not None:
        d.tcs.top_k = top_k
    if alpha is not None:
        d.tcs.alpha = alpha
    if cfg.model.kind not in SUPPORTED_KINDS:
        raise DlmError(f"TCS distillation trains {' or '.join(SUPPORTED_KINDS)} students, not '{cfg.model.kind}' "
                       "(uniform and continuous kinds have no single-site target; see dlmkit.recipes.tcs)")
    if d.tcs.estimator not in ESTIMATORS:
        raise DlmError(f"unknown TCS estimator '{d.tcs.estimator}' (choose: {', '.join(ESTIMATORS)})")
    if teacher_obj is None and not d.teacher:
        raise DlmError("give --teacher (a dlmkit AR run, an HF causal-LM folder, a .gguf file or smollm2)")
    info = init_distributed()
    t0 = time.perf_counter()
    tch = teacher_obj or load_teacher(d.teacher, info.device)
    load_s = time.perf_counter() - t0
    if tch.tokenizer is None:
        raise DlmError("the teacher has no tokenizer to give the student")
    if start is not None:
        tch.check_tokenizer(start[1])
    tch.check_length(cfg.model.seq_len)
    run = Path(cfg.out_dir)
    if not resume:
        if info.is_main:
            tch.tokenizer.save(run / "teacher_tokenizer")
        cfg.tokenizer.kind, cfg.tokenizer.path = "hf", str((run / "teacher_tokenizer").resolve())
    loss_fn = TCSLoss(tch, estimator=d.tcs.estimator, k=d.tcs.top_k, alpha=d.tcs.alpha, batch=d.tcs.teacher_batch)
    rows0, tok0 = tch.forward_rows, tch.forward_tokens  # a shared teacher object keeps counting across runs
    trainer = Trainer(cfg, resume=bool(resume), progress=progress, loss_fn=loss_fn, start=start)
    tch.check_tokenizer(trainer.tokenizer)
    result = trainer.fit()
    summary = {k: v for k, v in asdict(result).items() if k != "history"}
    summary.update(
        kind=cfg.model.kind, teacher=d.teacher or tch.name, estimator=d.tcs.estimator, top_k=d.tcs.top_k,
        alpha=d.tcs.alpha, teacher_load_s=load_s, teacher_seconds=loss_fn.teacher_seconds,
        teacher_share=loss_fn.teacher_seconds / max(1e-9, result.seconds),
        teacher_rows_per_target=(tch.forward_rows - rows0) / max(1, loss_fn.targets),
        teacher_tok_per_target=(tch.forward_tokens - tok0) / max(1, loss_fn.targets),
        targets=loss_fn.targets,
    )
    return summary
