"""Self-distillation through time (SDTT): an mdlm model learns to take in k ancestral steps what it
took in 2k, in rounds that each halve the steps (the target and divergences: :mod:`dlmkit.diffusion.sdtt`).

The student starts as a copy of the teacher. A training step draws clean blocks x0, one student step
j of the round's k-step plan per row, x_t from the forward process at that step's time, and the
target of two teacher steps (two teacher calls); the student's x0 prediction at the masked positions
is pulled towards it. At the end of a round (``distill.sdtt.round_steps`` training steps) the student
becomes the next round's teacher: its raw weights (``refresh=raw``, as the paper's code), or its EMA
(``refresh=ema``, which then also replaces the student and restarts the EMA). The optimiser runs on
across rounds. The EMA of the weights (``train.ema``; the paper: 0.9999) gives the published
students.

Run folder: the engine's (``checkpoints``, ``metrics.jsonl`` with ``round``, ``teacher_steps`` and
``student_steps`` on every line, ...), ``teachers/round_R.safetensors`` (each round's teacher, so a
resumed run continues with the right one) and ``students/round_R``: the student after round R, a
normal ``mdlm`` checkpoint whose ``config.json`` records ``recommended_steps`` (the steps it was
distilled for; ``dlm sample`` uses them when ``--steps`` is not given). The run's own step
checkpoints record the current round's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from dlmkit.checks import check_config
from dlmkit.data.corpus import resolve_paths
from dlmkit.diffusion.graphs import Absorbing
from dlmkit.diffusion.sdtt import DIVERGENCES, TARGETS, StepPair, divergence, rounds_schedule, rows_step, step_pairs, two_step_target
from dlmkit.engine.config import RunConfig, apply_run_options, load_config
from dlmkit.engine.distributed import barrier
from dlmkit.engine.loop import Engine, resume_config
from dlmkit.errors import DlmError
from dlmkit.hub import checkpoint as ckpt
from dlmkit.hub.model import DlmModel, read_weights
from dlmkit.io import atomic_path
from dlmkit.recipes.pretrain import Pretrain, load_start
from dlmkit.sampling.masked_kernels import get_masked_kernel

KINDS = ("mdlm", "mdlm_sigma")
REFRESH = ("raw", "ema")


class SDTT(Pretrain):
    """The SDTT recipe: a frozen teacher beside the student (``engine.model``), refreshed each round."""

    def __init__(self, cfg: RunConfig, start: tuple[DlmModel, Any]):
        super().__init__(start=start)
        s = cfg.distill.sdtt
        self.rounds = rounds_schedule(s.start_steps, s.rounds)  # [(teacher steps, student steps)]
        self.round_len, self.divergence, self.refresh, self.target = s.round_steps, s.divergence, s.refresh, s.target
        self.teacher: DlmModel | None = None
        self.teacher_round: int | None = None
        self.pairs: dict[int, list[StepPair]] = {}

    # ---- set-up ---------------------------------------------------------------------------

    def setup(self, engine: Engine) -> None:
        super().setup(engine)  # tokenizer, data, the student = the starting model
        if engine.model.kind not in KINDS:
            raise DlmError(f"SDTT distils masked diffusion ({', '.join(KINDS)}) models, not '{engine.model.kind}'")
        if engine.cfg.train.distributed == "fsdp" and engine.info.world > 1:
            raise DlmError("SDTT runs under DDP (train.distributed=ddp): its teacher is a full copy on every process")
        self.teacher = copy.deepcopy(engine.model).to(engine.info.device).eval().requires_grad_(False)
        self.kernel = get_masked_kernel("ancestral", engine.model.method.mask_id)
        if engine.info.is_main:
            for sub in ("teachers", "students"):
                ckpt.clear_partial(engine.run_dir / sub)
            if not ckpt.step_folders(engine.run_dir):  # a new run (a resumed one keeps its files)
                self._write_teacher(engine, 0)
        barrier()  # every round's teacher, the first included, is read from its file: a resumed run gets the same bits

    def _teacher_file(self, engine: Engine, r: int) -> Path:
        return engine.run_dir / "teachers" / f"round_{r + 1}.safetensors"

    def _write_teacher(self, engine: Engine, r: int) -> None:
        with atomic_path(self._teacher_file(engine, r)) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.teacher.state_dict().items()}, str(tmp))

    def _use_teacher(self, engine: Engine, r: int) -> None:
        """The teacher of round ``r`` (a resumed run reads it from its file)."""
        if self.teacher_round == r:
            return
        path = self._teacher_file(engine, r)
        if not path.is_file():
            raise DlmError(f"{path}: missing: the teacher of round {r + 1} of this run cannot be restored")
        self.teacher.load_state_dict(read_weights(self.teacher, path))
        self.teacher_round = r

    def round_of(self, step: int) -> int:
        """The round (0-based) that training step ``step`` (1-based) belongs to."""
        return min((step - 1) // self.round_len, len(self.rounds) - 1)

    # ---- one step -------------------------------------------------------------------------

    def loss(self, engine: Engine, net: nn.Module, x: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        r = self.round_of(engine.step + 1)
        self._use_teacher(engine, r)
        k = self.rounds[r][1]
        engine.model.config["recommended_steps"] = k
        method = engine.method
        if k not in self.pairs:
            self.pairs[k] = step_pairs(method.schedule, k)
        pairs = self.pairs[k]
        j = torch.randint(k, (x.shape[0],), generator=generator, device=generator.device).to(x.device)
        pair = StepPair(*(rows_step([getattr(p, f) for p in pairs], j) for f in ("student", "first", "second")))
        sigma = pair.student.sigma
        x_t = Absorbing(method.vocab_size, method.mask_id).sample_forward(x, sigma, generator)
        target = two_step_target(method.denoiser(self.teacher.net), self.kernel, x_t, pair, generator, self.target)
        log_q = method.denoiser(net)(x_t, sigma)
        masked = x_t == method.mask_id
        d = divergence(self.divergence, log_q[masked], target[masked])
        return d.sum() / max(1, d.numel()), {"masked": float(masked.float().mean())}

    def end_of_step(self, engine: Engine) -> None:
        """At the end of a round: publish its student, then make it the next round's teacher."""
        step = engine.step
        if step % self.round_len or step // self.round_len > len(self.rounds):
            return
        done = step // self.round_len - 1
        k = self.rounds[done][1]
        engine.model.config["recommended_steps"] = k
        with engine.inference_weights():
            if engine.info.is_main:
                ckpt.save_checkpoint(student_folder(engine.run_dir, done), engine.model, engine.tokenizer)
        if done + 1 == len(self.rounds):
            return
        if self.refresh == "ema" and engine.ema is not None:
            engine.ema.copy_to(engine.model)
            engine.ema.load_state_dict({n: p.detach() for n, p in engine.model.named_parameters()})
        self.teacher.load_state_dict(engine.model.state_dict())
        self.teacher_round = done + 1
        if engine.info.is_main:
            self._write_teacher(engine, done + 1)

    def record(self, engine: Engine, record: dict[str, Any]) -> dict[str, Any]:
        if "step" in record and record["step"] > 0:
            r = self.round_of(record["step"])
            record.update(round=r + 1, teacher_steps=self.rounds[r][0], student_steps=self.rounds[r][1])
        return record


def student_folder(run_dir: str | Path, r: int) -> Path:
    """The folder of the student published after round ``r`` (0-based)."""
    return Path(run_dir) / "students" / f"round_{r + 1}"


def _config(teacher: str) -> RunConfig:
    """The run config: the teacher run's (its data, batch and precision) when it is a dlmkit run, else
    the defaults; the learning rate held constant after warm-up, as the paper."""
    run_cfg = ckpt.find_run_config(teacher) if Path(teacher).is_dir() else None
    cfg = load_config(str(run_cfg)) if run_cfg is not None else RunConfig()
    cfg.model.init_from = str(teacher)
    cfg.train.schedule = "constant"
    cfg.distill.teacher = str(teacher)
    return cfg


def distill_sdtt(
    teacher: str | None = None, out_dir: str | None = None, *, rounds: int | None = None, start_steps: int | None = None,
    round_steps: int | None = None, divergence: str | None = None, target: str | None = None, data: list[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (), resume: str | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Distil (or resume distilling) an mdlm ``teacher`` (a dlmkit run or checkpoint, or a released
    MDLM folder) into students that take half its steps, round after round. Returns the engine's
    summary plus ``rounds``: per round its steps, mean training loss, last validation loss and the
    student's folder; ``student`` is the last round's and ``recommended_steps`` its step count."""
    if resume:
        cfg = resume_config(resume, list(overrides))
    else:
        if not teacher:
            raise DlmError("give the TEACHER: an mdlm run or checkpoint, or a released MDLM folder")
        cfg = _config(teacher)
        apply_run_options(cfg, overrides, data, out_dir)
    s = cfg.distill.sdtt
    for name, value in (("rounds", rounds), ("start_steps", start_steps), ("round_steps", round_steps), ("divergence", divergence),
                        ("target", target)):
        if value is not None:
            setattr(s, name, value)
    if s.divergence not in DIVERGENCES:
        raise DlmError(f"unknown SDTT divergence '{s.divergence}' (choose: {', '.join(DIVERGENCES)})")
    if s.target not in TARGETS:
        raise DlmError(f"distill.sdtt.target={s.target} is not one of {', '.join(TARGETS)}")
    if s.refresh not in REFRESH:
        raise DlmError(f"distill.sdtt.refresh={s.refresh} is not one of {', '.join(REFRESH)}")
    if s.round_steps < 1:
        raise DlmError(f"distill.sdtt.round_steps must be at least 1, got {s.round_steps}")
    schedule = rounds_schedule(s.start_steps, s.rounds)
    cfg.train.steps = s.rounds * s.round_steps
    check_config(cfg)
    start = load_start(cfg)
    if cfg.model.kind not in KINDS:
        raise DlmError(f"SDTT distils masked diffusion ({', '.join(KINDS)}) models; {cfg.model.init_from} is a {cfg.model.kind} model")
    if not cfg.data.train:
        raise DlmError("no training data: give --data (files, folders, globs or jsonl); a dlmkit teacher run lends its own")
    resolve_paths(cfg.data.train)  # a missing path fails before the run folder is made
    recipe = SDTT(cfg, start)
    result = Engine(cfg, recipe, resume=bool(resume), progress=progress).fit()
    per_round = []
    for r, (t_steps, k) in enumerate(schedule):
        lines = [h for h in result.history if h.get("round") == r + 1]
        losses = [h["loss"] for h in lines if "loss" in h]
        vals = [h["val_loss"] for h in lines if "val_loss" in h]
        folder = student_folder(cfg.out_dir, r)
        per_round.append({"round": r + 1, "teacher_steps": t_steps, "student_steps": k,
                          "loss": sum(losses) / len(losses) if losses else None, "val_loss": vals[-1] if vals else None,
                          "student": str(folder) if folder.is_dir() else None})
    summary = {k: v for k, v in vars(result).items() if k != "history"}
    summary.update(kind=cfg.model.kind, teacher=cfg.distill.teacher, divergence=s.divergence, target=s.target, refresh=s.refresh,
                   rounds=per_round, student=per_round[-1]["student"], recommended_steps=schedule[-1][1])
    return summary
