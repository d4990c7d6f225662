"""DLM-One (Chen, Zhang, Zhou 2025): distil a DiffuSeq teacher into a one-step generator.

Three networks, all initialised from the teacher ``phi``:

* the generator ``theta`` (a ``dlm_one`` student, the teacher's ``DiffuSeqNet``):
  ``e = G_theta(c, z)``, one call at ``t_init`` (see ``dlmkit.methods.dlm_one.one_step``);
* the fake-score estimator ``psi`` with a small discriminator head on its last hidden features
  (:class:`FakeScore`): it is both the score network of the generator's distribution and the
  discriminator (SiDA);
* the frozen teacher ``phi``.

The token-embedding matrix is frozen (shared by all three). One iteration (the paper's
Algorithm 1): update ``psi`` with ``a_dsm * Eq.3 + b_adv * Eq.5`` on a fresh generator batch
and a real batch, then ``theta`` with ``a_sd * Eq.4 + b_adv * Eq.6`` (math in
``dlmkit.diffusion.sid``). AdamW with ``betas=(0, 0.999)`` and no weight decay.

Two stages: stage 1 trains while checking validation BLEU every ``eval_every`` steps and keeps
the best student; stage 2 starts from that student with ``psi`` re-initialised from the teacher
(with the stage's own ``mu``, ``a_sd``, ``b_adv``). Run folder::

    OUT/distill.json  metrics.jsonl  progress.json
    OUT/stage1/checkpoints/step_N   (student + psi + both optimisers + RNGs + data position: the engine's)
    OUT/stage1/checkpoints/best     (best student of the stage by validation BLEU)
    OUT/stage2/...
    OUT/student                     (the final student: a model folder for ``dlm sample``)

``resume=True`` continues exactly from the newest readable checkpoint of the current stage.
One process, or several under ``torchrun`` (data parallel: each process takes its slice of the
batch and the gradients of both updates are averaged; rank 0 writes).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dlmkit.checks import DECAY, NON_NEGATIVE, POSITIVE, Range, check_value
from dlmkit.data.seq2seq_blocks import prepare_seq2seq, target_mask
from dlmkit.diffusion.gaussian import masked_mean
from dlmkit.diffusion import sid
from dlmkit.errors import DlmError
from dlmkit.eval.metrics.seq2seq import bleu
from dlmkit.io import write_json
from dlmkit.methods.diffuseq import DiffuSeqNet, unwrap
from dlmkit.methods.dlm_one import default_t_init, one_step, paper_step
from dlmkit.hub.load import load as load_model
from dlmkit.hub.model import DlmModel
from dlmkit.hub import checkpoint as ckpt
from dlmkit.generate import SourceRows, generate, target_ids
from dlmkit.engine.config import RunConfig, apply_override, from_dict, load_config
from dlmkit.engine.distributed import average_gradients, barrier, gather_objects, init_distributed
from dlmkit.engine.loop import Engine, lock_run_folder
from dlmkit.engine.recipe import Recipe


@dataclass
class StageConfig:
    """Hyper-parameters of one stage (defaults: the paper's Table 5, QQP stage 1)."""

    steps: int = 1000
    mu: float = 1.2  # alpha of SiD's Eq. 4
    a_sd: float = 1.0  # weight of the SiD loss in theta's update
    a_dsm: float = 1.0  # weight of the DSM loss in psi's update
    b_adv: float = 0.0  # weight of the adversarial losses (Eqs. 5 and 6)
    lr_psi: float = 3e-5
    lr_theta: float = 1e-5


def stage2_defaults() -> StageConfig:
    """Table 5, QQP stage 2: mu = 0.5, a_sd = 0.9, b_adv = 0.1."""
    return StageConfig(steps=0, mu=0.5, a_sd=0.9, b_adv=0.1)


@dataclass
class DistillConfig:
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=stage2_defaults)
    t_init: int | None = None  # None: 1490 of 2000, scaled to the teacher's T
    t_min: int = 0
    t_max: int | None = None  # None: 1976 of 2000, scaled
    batch_size: int = 32
    weighting: str = "sid"  # omega_t: see dlmkit.diffusion.sid
    grad_clip: float = 1.0
    ema: float = 0.0  # >0: EMA of the generator, used for evaluation and the saved student
    eval_every: int = 100
    eval_n: int = 64  # validation sources for BLEU
    save_every: int = 100
    keep_last: int = 2
    log_every: int = 10
    seed: int = 0

    def resolved(self, T: int) -> "DistillConfig":
        out = copy.deepcopy(self)
        out.t_init = default_t_init(T) if self.t_init is None else int(self.t_init)
        out.t_max = paper_step(1976, T) if self.t_max is None else int(self.t_max)
        if not 0 <= out.t_init < T:
            raise DlmError(f"t_init must be in [0, {T - 1}], got {out.t_init}")
        if not 0 <= out.t_min <= out.t_max < T:
            raise DlmError(f"need 0 <= t_min <= t_max < {T}, got [{out.t_min}, {out.t_max}]")
        if out.weighting not in sid.WEIGHTINGS:
            raise DlmError(f"unknown weighting {out.weighting!r} ({', '.join(sid.WEIGHTINGS)})")
        return out


# allowed values of the numeric options (of both stages for steps, mu, ...); the rest are free
OPTION_RANGES: dict[str, Range] = {
    "steps": NON_NEGATIVE, "a_sd": NON_NEGATIVE, "a_dsm": NON_NEGATIVE, "b_adv": NON_NEGATIVE, "lr_psi": NON_NEGATIVE,
    "lr_theta": NON_NEGATIVE, "t_init": NON_NEGATIVE, "t_min": NON_NEGATIVE, "t_max": NON_NEGATIVE, "batch_size": POSITIVE,
    "grad_clip": NON_NEGATIVE, "ema": DECAY, "eval_every": NON_NEGATIVE, "eval_n": POSITIVE, "save_every": NON_NEGATIVE,
    "keep_last": POSITIVE, "log_every": POSITIVE, "seed": NON_NEGATIVE,
}


def check_ranges(cfg: DistillConfig) -> None:
    """Every numeric option of ``cfg`` (both stages) in its range (:data:`OPTION_RANGES`)."""
    for prefix, obj in (("", cfg), ("stage1.", cfg.stage1), ("stage2.", cfg.stage2)):
        for f in fields(obj):
            if f.name in OPTION_RANGES:
                check_value(prefix + f.name, getattr(obj, f.name), OPTION_RANGES[f.name])


def apply_overrides(cfg: DistillConfig, items: list[str]) -> DistillConfig:
    """``key=value`` overrides in the grammar of ``dlm train`` (e.g. ``stage1.mu=1.0``, ``batch_size=16``)."""
    for item in items:
        apply_override(cfg, item)
    check_ranges(cfg)
    return cfg


# ---- networks ---------------------------------------------------------------------------------


class FakeScore(nn.Module):
    """``psi``: a DiffuSeq denoiser plus a discriminator head on its last hidden features.

    ``forward(x_t, t, mask)`` returns ``(x0_hat [B,L,D], logit [B])``; the logit is the head's
    per-position output averaged over target positions (``D = sigmoid(logit)``).
    """

    def __init__(self, net: DiffuSeqNet):
        super().__init__()
        self.net = net
        d_model = net.transformer.cfg.d_model
        self.disc_head = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, 1))
        nn.init.zeros_(self.disc_head[2].weight)
        nn.init.zeros_(self.disc_head[2].bias)
        self._feat: Tensor | None = None
        net.transformer.norm.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self._feat = output

    def forward(self, x_t: Tensor, t: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        x0_hat = self.net.x0(x_t, t)
        per_pos = self.disc_head(self._feat).squeeze(-1).float()
        self._feat = None
        return x0_hat, masked_mean(per_pos, mask)


def student_config(teacher: DlmModel, t_init: int) -> dict[str, Any]:
    """The ``dlm_one`` config of a student of ``teacher``: the same network, one step from ``t_init``."""
    config = copy.deepcopy(teacher.config)
    config["kind"] = "dlm_one"
    config["options"] = {**config.get("options", {}), "dlm_one": {"t_init": int(t_init), "refine": 0}}
    return config


# ---- teacher run and data -------------------------------------------------------------------


def load_teacher_data(teacher_path: str, tokenizer: Any, seq_len: int, *, data: str | None, valid: str | None, seed: int):
    """Train blocks, valid blocks and the valid order: the teacher run's data unless given."""
    run_cfg = ckpt.find_run_config(teacher_path)
    overrides = []
    if data:
        overrides.append(f"data.train={data}")
    if valid:
        overrides.append(f"data.valid={valid}")
    if run_cfg is None:
        if not data:
            raise DlmError(f"{teacher_path}: no run config.yaml next to the teacher: give the pairs with --data")
        cfg = load_config("diffuseq-tiny", overrides)
    else:
        cfg = load_config(str(run_cfg), overrides)
    cfg.model.seq_len = seq_len
    cfg.seed = seed
    return prepare_seq2seq(cfg, tokenizer, report=False)


# ---- a stage on the engine ------------------------------------------------------------------


class Distillation:
    """What both stages share: the frozen teacher, its tokenizer and data, the resolved options."""

    def __init__(self, teacher_path: str, cfg: DistillConfig, *, data: str | None, valid: str | None, device: str | None):
        self.info = init_distributed()  # its device: CUDA when present, else the CPU
        self.device = torch.device(device) if device and self.info.world == 1 else self.info.device
        self.teacher, self.tokenizer = load_model(teacher_path, self.device)
        if self.teacher.kind != "diffuseq":
            raise DlmError(f"DLM-One distils a diffuseq teacher, got a {self.teacher.kind} model")
        self.diffusion = self.teacher.method.diffusion
        self.cfg = cfg.resolved(self.teacher.method.T)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.train_blocks, self.valid_blocks, self.valid_order = load_teacher_data(
            teacher_path, self.tokenizer, self.teacher.seq_len, data=data, valid=valid, seed=self.cfg.seed)
        if len(self.valid_order) == 0:
            self.valid_order = self.train_blocks.train[: self.cfg.eval_n]
        self.sep = self.teacher.method.specials.sep
        self.pad = self.teacher.method.specials.pad
        self.t_net = unwrap(self.teacher.net)

    def run_config(self, out: Path, stage: int) -> RunConfig:
        """The engine's settings for ``stage``: SiD's AdamW (betas (0, 0.999), no decay) at a constant rate."""
        c, st = self.cfg, (self.cfg.stage1 if stage == 1 else self.cfg.stage2)
        run = RunConfig(out_dir=str(out / f"stage{stage}"), seed=c.seed * 1000 + stage)
        run.model.kind, run.model.seq_len = "dlm_one", self.teacher.seq_len
        t = run.train
        t.steps, t.batch_size, t.lr, t.warmup, t.schedule, t.weight_decay, t.beta1 = st.steps, c.batch_size, st.lr_theta, 0, "constant", 0.0, 0.0
        t.grad_clip, t.ema, t.eval_every, t.save_every, t.keep_last, t.log_every = c.grad_clip, c.ema, c.eval_every, c.save_every, c.keep_last, c.log_every
        t.precision, t.loggers = "fp32", ["jsonl"]
        return run


class Stage(Recipe):
    """One stage of DLM-One on the engine: the generator ``theta`` is the engine's model (its
    optimiser the engine's), the fake score ``psi`` a further network with its own optimiser."""

    wrap = False  # two updates per step: gradients are averaged over processes in _update
    higher_is_better = True  # validation BLEU
    validate_at_start = True  # the stage's starting student is a candidate too

    def __init__(self, run: Distillation, stage: int, init_student: Path | None, metrics: Path):
        self.run, self.stage, self.init_student, self.metrics = run, stage, init_student, metrics
        self.st = run.cfg.stage1 if stage == 1 else run.cfg.stage2

    def setup(self, engine: Engine) -> None:
        d = self.run
        self.engine = engine
        engine.metrics_path = self.metrics
        engine.tokenizer = d.tokenizer
        engine.blocks, engine.valid_blocks, engine.valid_order = d.train_blocks, d.valid_blocks, d.valid_order
        self.student = engine.model = DlmModel(student_config(d.teacher, d.cfg.t_init))
        if self.init_student is None:
            self.student.net.load_state_dict(d.teacher.net.state_dict())
        else:
            ckpt.load_weights(self.student, self.init_student / ckpt.WEIGHTS_NAME)
        self.student.to(d.device)
        self.g_net = unwrap(self.student.net)
        self.g_net.word_emb.weight.requires_grad_(False)  # the embedding matrix is frozen

    def networks(self, engine: Engine) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
        self.psi = FakeScore(copy.deepcopy(self.run.t_net)).to(self.run.device).train()
        for p in self.psi.parameters():
            p.requires_grad_(p is not self.psi.net.word_emb.weight)
        self.opt_psi = torch.optim.AdamW([p for p in self.psi.parameters() if p.requires_grad], lr=self.st.lr_psi,
                                         betas=(0.0, 0.999), weight_decay=0.0)
        return {"psi": (self.psi, self.opt_psi)}

    def tags(self, engine: Engine) -> dict[str, Any]:
        return {"stage": self.stage}

    def record(self, engine: Engine, record: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in record.items() if k not in ("loss", "lr", "tokens_per_s", "val_loss")}
        return {**out, "val_bleu": record["val_loss"]} if "val_loss" in record else out

    # ---- one iteration (Algorithm 1) -----------------------------------------------------------

    def _randn(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self.engine.gen, dtype=like.dtype, device=like.device)

    def _t(self, batch: int) -> Tensor:
        return sid.sample_t(batch, self.run.cfg.t_min, self.run.cfg.t_max, generator=self.engine.gen, device=self.run.device)

    def train_step(self, engine: Engine, rows: Tensor) -> tuple[float, dict[str, float]]:
        st, cfg, d = self.st, self.run.cfg, self.run
        mask = target_mask(rows, d.sep)
        with torch.no_grad():
            x_real = d.t_net.embed(rows)  # clean pairs (condition + target) in the frozen space
        B = rows.shape[0]
        # -- psi: a_dsm * Eq. 3 + b_adv * Eq. 5
        with torch.no_grad():
            x_g = one_step(self.g_net.x0, x_real, mask, self._randn(x_real), cfg.t_init)
        t = self._t(B)
        x_t = d.diffusion.q_sample(x_g, t, mask, noise=self._randn(x_g))
        f_psi, logit_fake = self.psi(x_t, t, mask)
        l_dsm = sid.dsm_loss(f_psi, x_g, mask).mean()
        loss_psi = st.a_dsm * l_dsm
        l_disc = torch.zeros(())
        if st.b_adv > 0:
            real_t = d.diffusion.q_sample(x_real, t, mask, noise=self._randn(x_real))
            _, logit_real = self.psi(real_t, t, mask)
            l_disc = sid.discriminator_loss(logit_real, logit_fake).mean()
            loss_psi = loss_psi + st.b_adv * l_disc
        _update(self.opt_psi, loss_psi, self.psi, cfg.grad_clip)
        # -- theta: a_sd * Eq. 4 + b_adv * Eq. 6 (psi and phi frozen, gradients through x_t)
        self.psi.requires_grad_(False)
        try:
            x_g = one_step(self.g_net.x0, x_real, mask, self._randn(x_real), cfg.t_init)
            t = self._t(B)
            kept: dict[str, Tensor] = {}

            def fake(x: Tensor, tt: Tensor) -> Tensor:
                f, logit = self.psi(x, tt, mask)
                kept["logit"] = logit
                return f

            l_sid_rows, _ = sid.sid_generator_loss(d.diffusion, x_g, d.t_net.x0, fake, t, mask, mu=st.mu,
                                                   weighting=cfg.weighting, noise=self._randn(x_g))
            l_sid = l_sid_rows.mean()
            loss_theta = st.a_sd * l_sid
            l_gadv = sid.generator_adv_loss(kept["logit"]).mean()
            if st.b_adv > 0:
                loss_theta = loss_theta + st.b_adv * l_gadv
            _update(engine.opt, loss_theta, self.student, cfg.grad_clip)
            engine.sched.step()
        finally:
            self.psi.requires_grad_(True)
            self.psi.net.word_emb.weight.requires_grad_(False)
        if engine.ema is not None:
            engine.ema.update(self.student)
        vals = {"loss_psi": loss_psi, "dsm": l_dsm, "disc": l_disc, "loss_theta": loss_theta, "sid": l_sid, "gen_adv": l_gadv,
                "d_fake": torch.sigmoid(kept["logit"]).mean()}
        every = gather_objects({k: float(v.detach()) for k, v in vals.items()})
        mean = {k: sum(m[k] for m in every) / len(every) for k in vals}
        return mean["loss_theta"], mean

    @torch.no_grad()
    def validate(self, engine: Engine) -> float:
        """Mean sentence BLEU (DiffuSeq's) of one-step outputs on the first ``eval_n`` validation rows."""
        d = self.run
        idx = [int(i) for i in d.valid_order[: d.cfg.eval_n]]
        rows = d.valid_blocks.batch(idx)
        cond = torch.where(target_mask(rows, d.sep), torch.full_like(rows, d.pad), rows)
        with engine.inference_weights():
            out = generate(self.student, SourceRows(cond), steps=1, batch=64, seed=12345, autocast=False)
        hyps = d.tokenizer.decode_batch([target_ids(self.student, r) for r in out.tokens.tolist()])
        return bleu(hyps, [d.valid_blocks.targets[i] for i in idx])


def stage_engine(d: Distillation, out: Path, stage: int, *, init_student: Path | None, resume: bool, progress: bool) -> Engine:
    """The engine holding ``stage`` of the run in ``out`` (resumed when its folder holds one)."""
    cfg = d.run_config(out, stage)
    resume = resume and (Path(cfg.out_dir) / "config.yaml").is_file()
    return Engine(cfg, Stage(d, stage, init_student, out / "metrics.jsonl"), resume=resume, progress=progress, device=d.device)


def run_stage(d: Distillation, out: Path, stage: int, *, init_student: Path | None, resume: bool, progress: bool) -> dict[str, Any]:
    """Train (or resume) ``stage``; its step count, best and last validation BLEU and best student."""
    st = d.cfg.stage1 if stage == 1 else d.cfg.stage2
    if st.steps == 0:
        return {"stage": stage, "steps": 0, "best_bleu": None, "last_bleu": None, "seconds": 0.0, "steps_run": 0, "best": None}
    engine = stage_engine(d, out, stage, init_student=init_student, resume=resume, progress=progress)
    start = engine.step
    res = engine.fit()
    barrier()  # the stage's files are written before any process reads them
    best = engine.run_dir / "checkpoints" / "best"
    return {"stage": stage, "steps": res.steps, "best_bleu": res.best_val_loss, "last_bleu": res.val_loss, "seconds": res.seconds,
            "steps_run": res.steps - start, "best": str(best) if best.is_dir() else None}


def distill_dlm_one(teacher: str, out_dir: str, cfg: DistillConfig | None = None, *, overrides: list[str] | tuple[str, ...] = (),
                    data: str | None = None, valid: str | None = None, device: str | None = None, resume: bool = False,
                    progress: bool = True) -> dict[str, Any]:
    """Run (or resume) both stages and publish the final student to ``OUT/student``.

    ``overrides`` (``key=value``, e.g. ``stage1.steps=500``) apply on top of ``cfg``, or on top of
    the saved config when resuming (the teacher and data then come from ``OUT/distill.json``).
    Returns ``{"student", "stage1", "stage2", "t_init", "teacher", "seconds"}`` with each stage's
    best validation BLEU.
    """
    out = Path(out_dir)
    cfg = copy.deepcopy(cfg or DistillConfig())
    if not resume and (out / "progress.json").is_file():
        raise DlmError(f"{out} already holds a DLM-One run: pass --resume to continue it or choose another --out")
    if resume and not (out / "distill.json").is_file():
        raise DlmError(f"{out}: not a DLM-One run folder (no distill.json): cannot resume")
    if resume:
        saved = json.loads((out / "distill.json").read_text(encoding="utf-8"))
        cfg = from_dict(DistillConfig, saved["config"])
        teacher, data, valid = saved["teacher"], saved.get("data"), saved.get("valid")
    cfg = apply_overrides(cfg, list(overrides))
    lock = lock_run_folder(out, init_distributed(), ("stage1", "stage1/checkpoints", "stage2", "stage2/checkpoints"))
    try:
        return _distill(teacher, out, cfg, data, valid, device, resume, progress)
    finally:
        lock.release()


def _distill(teacher: str, out: Path, cfg: DistillConfig, data: str | None, valid: str | None, device: str | None,
             resume: bool, progress: bool) -> dict[str, Any]:
    start = time.perf_counter()
    dist = Distillation(teacher, cfg, data=data, valid=valid, device=device)
    main = dist.info.is_main
    progress_path = out / "progress.json"
    state = json.loads(progress_path.read_text(encoding="utf-8")) if (resume and progress_path.is_file()) else {}
    barrier()  # every process has read the run's state before rank 0 writes
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "distill.json", {"teacher": str(teacher), "data": data, "valid": valid, "config": asdict(dist.cfg)})
        if not progress_path.is_file():
            write_json(progress_path, {"stage1": None, "stage2": None})
    results: dict[str, Any] = {}
    if state.get("stage1") is None or state["stage1"]["steps"] < dist.cfg.stage1.steps:  # new, or extended
        results["stage1"] = run_stage(dist, out, 1, init_student=None, resume=resume, progress=progress)
        state["stage1"], state["stage2"] = results["stage1"], None
        if main:
            write_json(progress_path, {"stage1": results["stage1"], "stage2": None})
    else:
        results["stage1"] = state["stage1"]
    best1 = Path(results["stage1"]["best"]) if results["stage1"].get("best") else None
    final = best1
    if dist.cfg.stage2.steps > 0:
        if state.get("stage2") is None or state["stage2"]["steps"] < dist.cfg.stage2.steps:
            results["stage2"] = run_stage(dist, out, 2, init_student=best1, resume=resume, progress=progress)
            if main:
                write_json(progress_path, {"stage1": results["stage1"], "stage2": results["stage2"]})
        else:
            results["stage2"] = state["stage2"]
        if results["stage2"].get("best"):
            final = Path(results["stage2"]["best"])
    else:
        results["stage2"] = None
    if final is None:  # no training steps at all: the student is the teacher's network as a one-step model
        if main:
            student = DlmModel(student_config(dist.teacher, dist.cfg.t_init))
            student.net.load_state_dict(dist.teacher.net.state_dict())
            ckpt.save_checkpoint(out / "student", student, dist.tokenizer)
    elif main:
        model, tok = load_model(final)
        ckpt.save_checkpoint(out / "student", model, tok)
    barrier()
    return {"student": str(out / "student"), "teacher": str(teacher), "t_init": dist.cfg.t_init, "t_range": [dist.cfg.t_min, dist.cfg.t_max],
            "stage1": results["stage1"], "stage2": results["stage2"], "seconds": time.perf_counter() - start}


def _update(opt: torch.optim.Optimizer, loss: Tensor, module: nn.Module, grad_clip: float) -> None:
    """One optimiser step on ``loss`` with optional gradient clipping of ``module``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(module.parameters())
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    opt.step()
