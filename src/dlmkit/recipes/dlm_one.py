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
    OUT/stage1/checkpoints/step_N   (student + psi + both optimisers + RNGs + data position)
    OUT/stage1/best                 (best student of the stage by validation BLEU)
    OUT/stage2/...
    OUT/student                     (the final student: a model folder for ``dlm sample``)

``resume=True`` continues exactly from the newest readable checkpoint of the current stage.
One process, or several under ``torchrun`` (data parallel: each process takes its slice of the
batch and the gradients of both updates are averaged; rank 0 writes).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from dlmkit.checks import DECAY, NON_NEGATIVE, POSITIVE, Range, check_value
from dlmkit.data.blocks import BlockSampler
from dlmkit.data.seq2seq_blocks import prepare_seq2seq, target_mask
from dlmkit.diffusion.gaussian import masked_mean
from dlmkit.diffusion import sid
from dlmkit.errors import DlmError
from dlmkit.eval.metrics.seq2seq import bleu
from dlmkit.io import append_jsonl, rewrite_jsonl, write_json
from dlmkit.methods.diffuseq import DiffuSeqNet, unwrap
from dlmkit.methods.dlm_one import default_t_init, one_step, paper_step
from dlmkit.hub.model import DlmModel
from dlmkit.hub import checkpoint as ckpt
from dlmkit.engine.config import apply_override, from_dict, load_config
from dlmkit.engine.distributed import average_gradients, barrier, gather_objects, init_distributed
from dlmkit.engine.ema import EMA
from dlmkit.engine.runlock import RunLock


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


# ---- the distiller ----------------------------------------------------------------------------


def _flatten_optim(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> list[dict]:
    sd = opt.state_dict()
    for idx, st in sd["state"].items():
        for key, val in st.items():
            tensors[f"{prefix}/{idx}/{key}"] = val if torch.is_tensor(val) else torch.tensor(val)
    return sd["param_groups"]


def _restore_optim(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, val in tensors.items():
        if key.startswith(prefix + "/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = val
    opt.load_state_dict({"state": state, "param_groups": groups})


class DLMOneDistiller:
    """Holds teacher, student (generator), psi, optimisers, data order and RNGs for one stage."""

    def __init__(self, teacher_path: str, out_dir: str, cfg: DistillConfig | None = None, *, data: str | None = None,
                 valid: str | None = None, device: str | None = None, progress: bool = True):
        from dlmkit.eval.tasks.perplexity import resolve_device

        self.info = init_distributed()
        self.device = self.info.device if self.info.world > 1 else resolve_device(device)
        self.out = Path(out_dir)
        self.progress = progress and self.info.is_main
        self.teacher, self.tokenizer = ckpt.load_model(teacher_path, self.device)
        if self.teacher.kind != "diffuseq":
            raise DlmError(f"DLM-One distils a diffuseq teacher, got a {self.teacher.kind} model")
        self.diffusion = self.teacher.method.diffusion
        self.T = self.teacher.method.T
        self.cfg = (cfg or DistillConfig()).resolved(self.T)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.train_blocks, self.valid_blocks, self.valid_order = load_teacher_data(
            teacher_path, self.tokenizer, self.teacher.seq_len, data=data, valid=valid, seed=self.cfg.seed)
        if len(self.valid_order) == 0:
            self.valid_order = self.train_blocks.train[: self.cfg.eval_n]
        self.sep = self.teacher.method.specials.sep
        self.pad = self.teacher.method.specials.pad
        self.t_net = unwrap(self.teacher.net)

    # ---- networks of a stage --------------------------------------------------------------------

    def _setup_stage(self, stage: int, init_student: Path | None) -> None:
        st = self.cfg.stage1 if stage == 1 else self.cfg.stage2
        self.stage, self.st = stage, st
        # every random stream of the stage comes from the run's seed: the global one (the
        # discriminator head's initialisation, dropout) here, the data order and the draws of
        # noise and t below; all are saved in the checkpoints, so a resumed stage is exact
        torch.manual_seed(self.cfg.seed * 1000 + stage)
        self.dir = self.out / f"stage{stage}"
        self.student = DlmModel(student_config(self.teacher, self.cfg.t_init))
        if init_student is None:
            self.student.net.load_state_dict(self.teacher.net.state_dict())
        else:
            ckpt.load_weights(self.student, init_student / ckpt.WEIGHTS_NAME)
        self.student.to(self.device).train()
        self.g_net = unwrap(self.student.net)
        self.g_net.word_emb.weight.requires_grad_(False)  # the embedding matrix is frozen
        self.psi = FakeScore(copy.deepcopy(self.t_net)).to(self.device).train()
        self.psi.net.word_emb.weight.requires_grad_(False)
        for p in self.psi.net.parameters():
            if p is not self.psi.net.word_emb.weight:
                p.requires_grad_(True)
        g_params = [p for p in self.student.parameters() if p.requires_grad]
        p_params = [p for p in self.psi.parameters() if p.requires_grad]
        self.opt_theta = torch.optim.AdamW(g_params, lr=st.lr_theta, betas=(0.0, 0.999), weight_decay=0.0)
        self.opt_psi = torch.optim.AdamW(p_params, lr=st.lr_psi, betas=(0.0, 0.999), weight_decay=0.0)
        self.ema = EMA(self.student, self.cfg.ema) if self.cfg.ema > 0 else None
        rank, world = self.info.rank, self.info.world
        self.sampler = BlockSampler(len(self.train_blocks.train), self.cfg.batch_size, self.cfg.seed + stage, rank=rank, world=world)
        self.gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 1000 + stage + 100_003 * rank)
        if rank:  # the networks are identical on every process; dropout differs
            torch.manual_seed(self.cfg.seed * 1000 + stage + 100_003 * rank)
        self.step = 0
        self.best_bleu: float | None = None
        self.last_bleu: float | None = None
        self.history: list[dict[str, Any]] = []

    # ---- one iteration (Algorithm 1) -----------------------------------------------------------

    def _randn(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self.gen, dtype=like.dtype, device=like.device)

    def _t(self, batch: int) -> Tensor:
        return sid.sample_t(batch, self.cfg.t_min, self.cfg.t_max, generator=self.gen, device=self.device)

    def train_step(self) -> dict[str, float]:
        st, cfg = self.st, self.cfg
        rows = self.train_blocks.batch(self.train_blocks.train[self.sampler.next_indices()]).to(self.device)
        mask = target_mask(rows, self.sep)
        with torch.no_grad():
            x_real = self.t_net.embed(rows)  # clean pairs (condition + target) in the frozen space
        B = rows.shape[0]
        # -- psi: a_dsm * Eq. 3 + b_adv * Eq. 5
        with torch.no_grad():
            x_g = one_step(self.g_net.x0, x_real, mask, self._randn(x_real), cfg.t_init)
        t = self._t(B)
        x_t = self.diffusion.q_sample(x_g, t, mask, noise=self._randn(x_g))
        f_psi, logit_fake = self.psi(x_t, t, mask)
        l_dsm = sid.dsm_loss(f_psi, x_g, mask).mean()
        loss_psi = st.a_dsm * l_dsm
        l_disc = torch.zeros(())
        if st.b_adv > 0:
            real_t = self.diffusion.q_sample(x_real, t, mask, noise=self._randn(x_real))
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

            l_sid_rows, _ = sid.sid_generator_loss(self.diffusion, x_g, self.t_net.x0, fake, t, mask, mu=st.mu,
                                                   weighting=cfg.weighting, noise=self._randn(x_g))
            l_sid = l_sid_rows.mean()
            loss_theta = st.a_sd * l_sid
            l_gadv = sid.generator_adv_loss(kept["logit"]).mean()
            if st.b_adv > 0:
                loss_theta = loss_theta + st.b_adv * l_gadv
            _update(self.opt_theta, loss_theta, self.student, cfg.grad_clip)
        finally:
            self.psi.requires_grad_(True)
            self.psi.net.word_emb.weight.requires_grad_(False)
        if self.ema is not None:
            self.ema.update(self.student)
        vals = {"loss_psi": loss_psi, "dsm": l_dsm, "disc": l_disc, "loss_theta": loss_theta, "sid": l_sid, "gen_adv": l_gadv,
                "d_fake": torch.sigmoid(kept["logit"]).mean()}
        mine = {k: float(v.detach()) for k, v in vals.items()}
        if self.info.world == 1:
            return mine
        every = gather_objects(mine)
        return {k: sum(m[k] for m in every) / len(every) for k in mine}

    # ---- evaluation ---------------------------------------------------------------------------

    def _swap_ema(self) -> list[Tensor] | None:
        if self.ema is None:
            return None
        backup = [p.detach().clone() for p in self.student.parameters()]
        self.ema.copy_to(self.student)
        return backup

    def _unswap(self, backup: list[Tensor] | None) -> None:
        if backup is not None:
            with torch.no_grad():
                for p, b in zip(self.student.parameters(), backup):
                    p.copy_(b)

    @torch.no_grad()
    def validate(self) -> float:
        """Mean sentence BLEU (DiffuSeq's) of one-step outputs on the first ``eval_n`` validation rows."""
        idx = [int(i) for i in self.valid_order[: self.cfg.eval_n]]
        backup = self._swap_ema()
        self.student.eval()
        try:
            gen = torch.Generator(device=self.device).manual_seed(12345)
            hyps = []
            for i in range(0, len(idx), 64):
                rows = self.valid_blocks.batch(idx[i : i + 64]).to(self.device)
                mask = target_mask(rows, self.sep)
                cond = torch.where(mask, torch.full_like(rows, self.pad), rows)
                out = self.student.method.sample(self.student.net, len(rows), rows.shape[1], steps=1, generator=gen, condition=cond)
                hyps += self.tokenizer.decode_batch([self.student.method.target_ids(r) for r in out.tokens.tolist()])
        finally:
            self.student.train()
            self._unswap(backup)
        refs = [self.valid_blocks.targets[i] for i in idx]
        return bleu(hyps, refs)

    # ---- state --------------------------------------------------------------------------------

    def _weights(self) -> dict[str, Tensor]:
        if self.ema is None:
            return {k: v.detach().cpu() for k, v in self.student.state_dict().items()}
        return {k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()}

    def save(self) -> None:
        tensors: dict[str, Tensor] = {f"raw/{k}": v.detach().cpu() for k, v in self.student.state_dict().items()}
        tensors.update({f"psi/{k}": v.detach().cpu() for k, v in self.psi.state_dict().items()})
        if self.ema is not None:
            tensors.update({f"ema/{k}": v.detach().cpu() for k, v in self.ema.state_dict().items()})
        g_groups = _flatten_optim("opt_theta", self.opt_theta, tensors)
        p_groups = _flatten_optim("opt_psi", self.opt_psi, tensors)
        rngs = gather_objects({"torch": torch.get_rng_state(), "gen": self.gen.get_state().cpu(),
                               **({"cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {})})
        if not self.info.is_main:
            return
        for rank, r in enumerate(rngs):
            tensors.update({f"rng/{rank}/{k}": v.cpu() for k, v in r.items()})
        meta = {"step": self.step, "stage": self.stage, "world": self.info.world, "sampler": self.sampler.state_dict(), "opt_theta_groups": g_groups,
                "opt_psi_groups": p_groups, "best_bleu": self.best_bleu, "last_bleu": self.last_bleu, "history": self.history}
        folder = self.dir / "checkpoints" / f"step_{self.step:07d}"
        ckpt.save_checkpoint(folder, self.student, self.tokenizer, self._weights(), tensors, meta)
        ckpt.prune(self.dir, self.cfg.keep_last)

    def restore(self) -> bool:
        """Load the newest readable checkpoint of the current stage; False when there is none."""
        for folder in ckpt.step_folders(self.dir):
            try:
                tensors, meta = ckpt.load_train_state(folder)
            except DlmError as e:
                if self.info.is_main:
                    print(f"warning: {e}; falling back to an earlier checkpoint", file=sys.stderr)
                continue
            self.student.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("raw/")})
            self.psi.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("psi/")})
            if self.ema is not None:
                self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema/")})
            _restore_optim("opt_theta", self.opt_theta, tensors, meta["opt_theta_groups"])
            _restore_optim("opt_psi", self.opt_psi, tensors, meta["opt_psi_groups"])
            rng = f"rng/{self.info.rank}/"
            if meta.get("world") == self.info.world:
                torch.set_rng_state(tensors[rng + "torch"])
                self.gen.set_state(tensors[rng + "gen"].to(self.gen.get_state().device))
                if torch.cuda.is_available() and rng + "cuda" in tensors:
                    torch.cuda.set_rng_state(tensors[rng + "cuda"])
            elif self.info.is_main:
                print(f"warning: resumed with {self.info.world} processes instead of {meta.get('world')}: random streams restart", file=sys.stderr)
            self.sampler.load_state_dict(meta["sampler"])
            self.step, self.best_bleu, self.last_bleu, self.history = meta["step"], meta["best_bleu"], meta["last_bleu"], meta["history"]
            if self.info.is_main:
                _truncate_metrics_stage(self.out / "metrics.jsonl", self.stage, self.step)
                print(f"resumed stage {self.stage} at step {self.step} from {folder}", file=sys.stderr)
            return True
        if self.info.is_main:  # no checkpoint: the stage starts over, so does its log
            _truncate_metrics_stage(self.out / "metrics.jsonl", self.stage, -1)
        return False

    # ---- a stage --------------------------------------------------------------------------------

    def run_stage(self, stage: int, *, init_student: Path | None, resume: bool) -> dict[str, Any]:
        self._setup_stage(stage, init_student)
        if resume:
            self.restore()
        st, cfg = self.st, self.cfg
        bar = tqdm(total=st.steps, initial=self.step, disable=not self.progress, desc=f"dlm-one stage {stage}", dynamic_ncols=True, file=sys.stderr)
        start, start_step = time.perf_counter(), self.step
        if self.step == 0 and self.best_bleu is None and st.steps > 0:  # the starting point is a candidate too
            self.last_bleu = self.best_bleu = self.validate()
            self._save_best()
            self._log({"stage": stage, "step": 0, "val_bleu": self.last_bleu})
        window: list[dict[str, float]] = []
        while self.step < st.steps:
            m = self.train_step()
            self.step += 1
            window.append(m)
            record: dict[str, Any] = {}
            if self.step % cfg.log_every == 0 or self.step == st.steps:
                record = {"stage": stage, "step": self.step, **{k: float(np.mean([w[k] for w in window])) for k in window[0]}}
                window = []
            if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == st.steps:
                self.last_bleu = self.validate()
                record.update(stage=stage, step=self.step, val_bleu=self.last_bleu)
                if self.best_bleu is None or self.last_bleu > self.best_bleu:
                    self.best_bleu = self.last_bleu
                    self._save_best()
            if record:
                self._log(record)
            if (cfg.save_every and self.step % cfg.save_every == 0) or self.step == st.steps:
                self.save()
            bar.update(1)
            bar.set_postfix(psi=f"{m['loss_psi']:.3f}", theta=f"{m['loss_theta']:.3f}", adv=f"{m['gen_adv']:.3f}",
                            bleu="-" if self.last_bleu is None else f"{self.last_bleu:.4f}")
        bar.close()
        barrier()  # the stage's files are written before any process reads them
        return {"stage": stage, "steps": self.step, "best_bleu": self.best_bleu, "last_bleu": self.last_bleu,
                "seconds": time.perf_counter() - start, "steps_run": self.step - start_step,
                "best": str(self.dir / "best") if (self.dir / "best").is_dir() else None}

    def _save_best(self) -> None:
        if self.info.is_main:
            ckpt.save_checkpoint(self.dir / "best", self.student, self.tokenizer, self._weights())

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.info.is_main:
            append_jsonl(self.out / "metrics.jsonl", record)


def _truncate_metrics_stage(path: Path, stage: int, step: int) -> None:
    """Drop this stage's metric lines written after ``step`` (a run killed after its checkpoint)
    and a last line the kill cut short."""
    rewrite_jsonl(path, lambda rec: not (rec.get("stage") == stage and rec.get("step", 0) > step))


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
    lock = _lock(out)  # one launch per run folder; released on return or exit
    try:
        return _distill(teacher, out, cfg, data, valid, device, resume, progress)
    finally:
        lock.release()


def _lock(out: Path) -> RunLock:
    """Rank 0 locks the run folder and clears what a killed run left; a refusal fails every process."""
    lock, error = RunLock(out), None
    if init_distributed().is_main:
        try:
            lock.acquire()
            for folder in (out, out / "stage1", out / "stage1" / "checkpoints", out / "stage2", out / "stage2" / "checkpoints"):
                ckpt.clear_partial(folder)
        except DlmError as e:
            error = str(e)
    error = gather_objects(error)[0]
    if error is not None:
        lock.release()
        raise DlmError(error)
    return lock


def _distill(teacher: str, out: Path, cfg: DistillConfig, data: str | None, valid: str | None, device: str | None,
             resume: bool, progress: bool) -> dict[str, Any]:
    out_dir = str(out)
    start = time.perf_counter()
    dist = DLMOneDistiller(teacher, out_dir, cfg, data=data, valid=valid, device=device, progress=progress)
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
        results["stage1"] = dist.run_stage(1, init_student=None, resume=resume)
        state["stage1"], state["stage2"] = results["stage1"], None
        if main:
            write_json(progress_path, {"stage1": results["stage1"], "stage2": None})
    else:
        results["stage1"] = state["stage1"]
    best1 = Path(results["stage1"]["best"]) if results["stage1"].get("best") else None
    final = best1
    if dist.cfg.stage2.steps > 0:
        if state.get("stage2") is None or state["stage2"]["steps"] < dist.cfg.stage2.steps:
            results["stage2"] = dist.run_stage(2, init_student=best1, resume=resume)
            if main:
                write_json(progress_path, {"stage1": results["stage1"], "stage2": results["stage2"]})
        else:
            results["stage2"] = state["stage2"]
        if results["stage2"].get("best"):
            final = Path(results["stage2"]["best"])
    else:
        results["stage2"] = None
    if final is None:  # no training steps at all: the student is the teacher's network as a one-step model
        dist._setup_stage(1, None)
        if main:
            ckpt.save_checkpoint(out / "student", dist.student, dist.tokenizer, dist._weights())
    elif main:
        model, tok = ckpt.load_model(final)
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
