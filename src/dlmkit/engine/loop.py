"""The run engine shared by every training recipe (plain training, TCS, ...).

A recipe (:class:`dlmkit.engine.recipe.Recipe`) builds the model, data and further networks and
states one training step; the engine drives it. One process on a CPU, or several processes, GPUs and nodes under ``torchrun`` (DDP, or FSDP for
models that do not fit one device). AdamW with warm-up then cosine or constant learning rate,
gradient clipping and accumulation, an optional EMA of the weights, bf16 autocast on CUDA and
fp32 on CPU, optional ``torch.compile``. Rank 0 shows a progress bar, appends to
``metrics.jsonl`` and writes checkpoints from which ``resume=True`` continues bit for bit.
Rank 0 holds a lock on the run folder while the run lives (:mod:`dlmkit.engine.runlock`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor
from tqdm import tqdm

from dlmkit.engine.config import RunConfig, apply_override, dump_yaml, load_config
from dlmkit.data.blocks import BlockSampler
from dlmkit.errors import DlmError
from dlmkit.io import append_jsonl, rewrite_jsonl, write_text
from dlmkit.hub.model import read_weights
from dlmkit.hub import checkpoint as ckpt
from dlmkit.engine.distributed import DistInfo, gather_objects, init_distributed, mean_across
from dlmkit.engine.ema import EMA
from dlmkit.engine.loggers import open_run_loggers
from dlmkit.engine.recipe import Recipe
from dlmkit.engine.runlock import RunLock

LossFn = Callable[[nn.Module, Tensor, torch.Generator], tuple[Tensor, dict[str, float]]]
FULL = StateDictOptions(full_state_dict=True)
FULL_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)
FULL_LOOSE = StateDictOptions(full_state_dict=True, strict=False)
EVAL_CHUNK = 16  # validation blocks per forward pass: a constant, so the noise does not follow the batch size


@dataclass
class TrainResult:
    """What a finished run reports."""

    run_dir: str
    steps: int
    final_loss: float  # mean training loss of the last logging window
    val_loss: float | None
    best_val_loss: float | None
    tokens_per_s: float
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def say(message: str) -> None:
    """A message to standard error that does not break the progress bar."""
    tqdm.write(message, file=sys.stderr)


def lr_factor(step: int, cfg: RunConfig) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine decay to min_lr_ratio or constant."""
    t = cfg.train
    if step < t.warmup:
        return (step + 1) / t.warmup
    if t.schedule == "constant":
        return 1.0
    if t.schedule != "cosine":
        raise DlmError(f"unknown learning-rate schedule '{t.schedule}' (cosine, constant)")
    span = t.schedule_steps or t.steps
    progress = min(1.0, (step - t.warmup) / max(1, span - t.warmup))
    return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Engine:
    """Holds a run's recipe, model, networks, optimisers, data order and RNGs; ``fit()`` trains to
    ``cfg.train.steps``."""

    def __init__(self, cfg: RunConfig, recipe: Recipe, *, resume: bool = False, progress: bool = True,
                 device: torch.device | None = None):
        """``device``: one process's device instead of the default (CUDA when present)."""
        self.info = init_distributed()
        if device is not None and self.info.world == 1:
            self.info = replace(self.info, device=torch.device(device))
        self.recipe = recipe
        self.step_metrics: dict[str, float] = {}
        self.run_dir = Path(cfg.out_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if resume and not (self.run_dir / "config.yaml").is_file():
            raise DlmError(f"{self.run_dir}: not a dlmkit run folder (no config.yaml): cannot resume")
        self.lock = lock_run_folder(self.run_dir, self.info, ("checkpoints", "tokenizer", "samples"))
        try:
            self._setup(cfg, resume, progress)
        except BaseException:
            self.close()
            raise

    def _setup(self, cfg: RunConfig, resume: bool, progress: bool) -> None:
        if not resume and ckpt.step_folders(self.run_dir):
            raise DlmError(f"{self.run_dir} already holds a run: pass --resume to continue it or choose another out_dir")
        if cfg.train.schedule_steps is not None and cfg.train.schedule_steps < 1:
            raise DlmError(f"train.schedule_steps must be at least 1 (or null: train.steps), got {cfg.train.schedule_steps}")
        self.cfg = cfg
        self.progress = progress and self.info.is_main
        t = cfg.train
        world = self.info.world
        micro = t.micro_batch or t.batch_size // world
        if t.batch_size % (world * micro):
            raise DlmError(f"train.batch_size={t.batch_size} is not a multiple of processes ({world}) x train.micro_batch ({micro})")
        self.micro, self.accum = micro, t.batch_size // (world * micro)
        torch.manual_seed(cfg.seed)
        self.recipe.setup(self)  # tokenizer, data and model; the model's kind and shape go into cfg.model
        self.tags = self.recipe.tags(self)
        if self.info.is_main and not resume:  # a resumed run's config.yaml changes only once its checkpoint is accepted
            if self.metrics_path.is_file() and not self.tags:  # a run killed before its first checkpoint: start over
                say(f"{self.run_dir} holds no checkpoint: starting over (its metrics.jsonl is reset)")
            self._truncate_metrics(-1)
            write_text(self.run_dir / "config.yaml", dump_yaml(cfg))
        self.model.to(self.info.device).train()
        self.method = self.model.method
        self.sharded = self.info.world > 1 and cfg.train.distributed == "fsdp"
        self.net = self._wrap(self.model.net) if self.recipe.wrap else self.model.net
        trained = [(n, p) for n, p in self.model.net.named_parameters() if p.requires_grad]
        decay = [p for n, p in trained if p.ndim >= 2 and "embed" not in n]
        no_decay = [p for n, p in trained if not (p.ndim >= 2 and "embed" not in n)]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=t.lr,
            betas=(t.beta1, t.beta2),
            **({"fused": True} if torch.device(self.info.device).type in ("cpu", "cuda") else {"foreach": True}),
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, cfg))
        self.ema = EMA(self.model, t.ema) if t.ema > 0 else None
        self.sampler = BlockSampler(len(self.blocks.train), t.batch_size, cfg.seed, rank=self.info.rank, world=world)
        self.gen = torch.Generator(device=self.info.device).manual_seed(cfg.seed * 1000 + self.info.rank)
        self.networks = self.recipe.networks(self)  # name -> (module, optimiser), saved beside the model
        self.step = 0
        self.best_val: float | None = None
        self.history: list[dict[str, Any]] = []
        self.window: list[float] = []  # training losses since the last logged step
        self.extra_window: dict[str, list[float]] = {}
        if resume:
            self._restore()
            if self.info.is_main:
                write_text(self.run_dir / "config.yaml", dump_yaml(cfg))

    def close(self) -> None:
        """Release the run folder (``fit`` does this when it ends)."""
        self.lock.release()

    # ---- set-up -------------------------------------------------------------------------------

    def _wrap(self, net: nn.Module) -> nn.Module:
        t = self.cfg.train
        if t.compile:
            net = torch.compile(net)
        if self.info.world > 1:
            if t.distributed == "fsdp":
                from torch.distributed.fsdp import fully_shard

                for block in net.blocks:
                    fully_shard(block)
                net = fully_shard(net)
            elif t.distributed == "ddp":
                ids = [self.info.device.index] if self.info.device.type == "cuda" else None
                net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
            else:
                raise DlmError(f"unknown train.distributed '{t.distributed}' (ddp, fsdp)")
        return net

    def _autocast(self) -> contextlib.AbstractContextManager:
        p = self.cfg.train.precision
        if p not in ("auto", "fp32", "bf16"):
            raise DlmError(f"unknown train.precision '{p}' (auto, fp32, bf16)")
        use_bf16 = p == "bf16" or (p == "auto" and self.info.device.type == "cuda")
        if use_bf16:
            return torch.autocast(device_type=self.info.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ---- state ------------------------------------------------------------------------------
    # Full (unsharded) weights and optimiser state through PyTorch's distributed state-dict
    # helpers, so one process, DDP and FSDP share this code. Gathers are collective: every rank
    # calls them; with CPU offload only rank 0 receives the tensors, and only rank 0 writes.

    def _raw_weights(self) -> dict[str, Tensor]:
        return get_model_state_dict(self.model, options=FULL_CPU)

    def _ema_weights(self) -> dict[str, Tensor]:
        return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu().clone() for k, v in self.ema.state_dict().items()}

    def _inference_state(self) -> dict[str, Tensor]:
        """The weights a checkpoint's model.safetensors holds: the EMA when enabled."""
        return self._ema_weights() if self.ema is not None else self._raw_weights()

    def _state(self) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Any]]:
        """(inference weights, training-state tensors, training-state JSON)."""
        tensors: dict[str, Tensor] = {}
        osd = get_optimizer_state_dict(self.model, self.opt, options=FULL_CPU)
        for fqn, st in osd.get("state", {}).items():  # empty on ranks other than 0
            for key, val in st.items():
                tensors[f"optim/{fqn}/{key}"] = val if torch.is_tensor(val) else torch.tensor(val)
        raw = self._raw_weights()
        weights = raw
        if self.ema is not None:
            weights = self._ema_weights()
            tensors.update({f"raw/{k}": v for k, v in raw.items()})
            tensors.update({f"ema/{k}": v for k, v in weights.items()})
        rngs = gather_objects(
            {
                "torch": torch.get_rng_state(),
                "gen": self.gen.get_state(),
                "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else torch.zeros(0, dtype=torch.uint8),
            }
        )
        for rank, r in enumerate(rngs):
            for key, val in r.items():
                tensors[f"rng/{rank}/{key}"] = val.cpu()
        for rank, state in enumerate(gather_objects(self.method.train_state())):  # e.g. DiffuSeq's loss-aware time sampler
            tensors.update({f"method/{rank}/{k}": v.cpu() for k, v in state.items()})
        groups = {}
        for name, (module, opt) in self.networks.items():  # the recipe's further networks and optimisers
            tensors.update({f"net/{name}/{k}": v for k, v in get_model_state_dict(module, options=FULL_CPU).items()})
            nsd = get_optimizer_state_dict(module, opt, options=FULL_CPU)
            for fqn, st in nsd.get("state", {}).items():
                for key, val in st.items():
                    tensors[f"optim:{name}/{fqn}/{key}"] = val if torch.is_tensor(val) else torch.tensor(val)
            groups[name] = nsd.get("param_groups", [])
        meta = {
            "step": self.step,
            "schedule_steps": self.cfg.train.schedule_steps or self.cfg.train.steps,
            "world": self.info.world,
            "sampler": self.sampler.state_dict(),
            "param_groups": osd.get("param_groups", []),
            "scheduler": self.sched.state_dict(),
            "best_val": self.best_val,
            "history": self.history,
            "window": self.window,
            "extra_window": self.extra_window,
            "networks": groups,
        }
        return weights, tensors, meta

    def _restore(self) -> None:
        """Load the newest readable checkpoint; fall back to older ones with a message. A readable
        checkpoint of another kind, architecture or tokenizer is refused."""
        errors = []
        want = ckpt.identity(self.model.config, self.tokenizer)
        for folder in ckpt.step_folders(self.run_dir):
            try:
                got = ckpt.folder_identity(folder)
                if (why := ckpt.describe_mismatch(want, got)) is not None:
                    raise ckpt.CheckpointMismatch(f"{folder} is {why}: it is not this run's checkpoint (remove it, or resume the run it belongs to)")
                tensors, meta = ckpt.load_train_state(folder)
                raw = {k[4:]: v for k, v in tensors.items() if k.startswith("raw/")} or read_weights(self.model, folder / ckpt.WEIGHTS_NAME)
                break
            except ckpt.CheckpointMismatch:
                raise
            except DlmError as e:
                errors.append(str(e))
                if self.info.is_main:
                    say(f"warning: {e}; falling back to an earlier checkpoint")
        else:
            if errors:
                raise DlmError(f"{self.run_dir}: no readable checkpoint to resume from")
            if self.info.is_main:  # killed before its first checkpoint: start from scratch, and so does the log
                self._truncate_metrics(-1)
            return
        self._check_schedule(meta)
        set_model_state_dict(self.model, raw, options=FULL)
        if self.ema is not None:
            self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema/")})
        opt_state: dict[str, Any] = {"state": {}, "param_groups": meta["param_groups"]}
        for key, val in tensors.items():
            if key.startswith("optim/"):
                _, fqn, name = key.split("/", 2)
                opt_state["state"].setdefault(fqn, {})[name] = val
        set_optimizer_state_dict(self.model, self.opt, optim_state_dict=opt_state, options=FULL)
        self.sched.load_state_dict(meta["scheduler"])
        for name, (module, opt) in self.networks.items():
            prefix, oprefix = f"net/{name}/", f"optim:{name}/"
            set_model_state_dict(module, {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, options=FULL)
            nstate: dict[str, Any] = {"state": {}, "param_groups": meta["networks"][name]}
            for key, val in tensors.items():
                if key.startswith(oprefix):
                    fqn, item = key[len(oprefix) :].split("/", 1)
                    nstate["state"].setdefault(fqn, {})[item] = val
            set_optimizer_state_dict(module, opt, optim_state_dict=nstate, options=FULL_LOOSE)  # unused parameters have no state
        self.sampler.load_state_dict(meta["sampler"])
        saved_ranks = sorted({int(k.split("/")[1]) for k in tensors if k.startswith("method/")})
        if saved_ranks:  # this rank's own state, or rank 0's when the number of processes changed
            src = self.info.rank if self.info.rank in saved_ranks else saved_ranks[0]
            prefix = f"method/{src}/"
            self.method.load_train_state({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        self.step, self.best_val, self.history = meta["step"], meta["best_val"], meta["history"]
        self.window, self.extra_window = list(meta.get("window", [])), dict(meta.get("extra_window", {}))
        rank = self.info.rank
        if meta["world"] == self.info.world:
            torch.set_rng_state(tensors[f"rng/{rank}/torch"])
            self.gen.set_state(tensors[f"rng/{rank}/gen"].to(self.gen.get_state().device))
            if torch.cuda.is_available() and tensors[f"rng/{rank}/cuda"].numel():
                torch.cuda.set_rng_state(tensors[f"rng/{rank}/cuda"])
        elif self.info.is_main:
            say(f"warning: resumed with {self.info.world} processes instead of {meta['world']}: random streams restart")
        if self.info.is_main:
            self._truncate_metrics(self.step)
            say(f"resumed {self.run_dir} at step {self.step} from {folder.name}")

    def _check_schedule(self, meta: dict[str, Any]) -> None:
        """A resume that changes ``train.steps`` keeps the cosine the run was trained on (re-stretching
        it would make the learning rate jump); ``train.schedule_steps`` chooses explicitly. Says which."""
        t = self.cfg.train
        old = meta.get("schedule_steps")
        if t.schedule != "cosine" or old is None:
            return
        if t.schedule_steps is None:
            if old == t.steps:
                return
            t.schedule_steps = old
            message = (f"train.steps={t.steps}: the learning rate keeps the run's cosine over {old} steps"
                       f"{f', then stays at its final value' if t.steps > old else ''} (train.schedule_steps={t.steps} re-stretches it instead)")
        elif t.schedule_steps != old:
            message = f"train.schedule_steps={t.schedule_steps}: the cosine learning rate is re-stretched over {t.schedule_steps} steps (it was {old})"
        else:
            return
        if self.info.is_main:
            say(message)

    def _truncate_metrics(self, step: int) -> None:
        truncate_metrics(self.metrics_path, step, self.tags)

    def _better(self, value: float) -> bool:
        if self.best_val is None:
            return True
        return value > self.best_val if self.recipe.higher_is_better else value < self.best_val

    def _validate(self, record: dict[str, Any]) -> float | None:
        """The recipe's validation figure into ``record``; the best weights so far to ``checkpoints/best``."""
        v = self.recipe.validate(self)
        if v is not None:
            record.update(step=self.step, val_loss=v)
            if self._better(v):
                self.best_val = v
                weights = self._inference_state()
                if self.info.is_main:
                    ckpt.save_checkpoint(self.run_dir / "checkpoints" / "best", self.model, self.tokenizer, weights)
        return v

    def _log(self, record: dict[str, Any], loggers: Any) -> None:
        record = self.recipe.record(self, {**self.tags, **record})
        self.history.append(record)
        if self.info.is_main:
            append_jsonl(self.metrics_path, record)
            loggers.log(record)

    def save(self) -> None:
        weights, tensors, meta = self._state()
        if not self.info.is_main:
            return
        folder = self.run_dir / "checkpoints" / f"step_{self.step:07d}"
        ckpt.save_checkpoint(folder, self.model, self.tokenizer, weights, tensors, meta)
        ckpt.prune(self.run_dir, self.cfg.train.keep_last)
        ckpt.clear_partial(folder.parent)

    @contextlib.contextmanager
    def inference_weights(self) -> Iterator[None]:
        """Evaluation mode with the EMA weights swapped in (when enabled), restored afterwards.

        FSDP keeps the root's parameters gathered after a forward pass without backward; they
        are sharded again here so that parameters and optimiser state stay in step.
        """
        params = list(self.model.parameters())
        backup = [p.detach().clone() for p in params] if self.ema is not None else []
        if self.ema is not None:
            self.ema.copy_to(self.model)
        self.model.eval()
        try:
            yield
        finally:
            self.model.train()
            if self.sharded:
                self.net.reshard()
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)

    # ---- loop ------------------------------------------------------------------------------

    def _train_step(self) -> float:
        idx = self.sampler.next_indices()
        x = self.blocks.batch(self.blocks.train[idx]).to(self.info.device)
        loss, self.step_metrics = self.recipe.train_step(self, x)
        return mean_across(loss, self.info.device)

    def accumulate(self, x: Tensor, loss_fn: LossFn) -> tuple[float, dict[str, float]]:
        """One step of the model's optimiser on ``loss_fn(net, micro_batch, generator)`` over ``x``'s
        micro-batches (gradients synchronised once), with clipping, the schedule and the EMA.
        Returns this process's mean loss and the mean of the loss's metrics."""
        total = 0.0
        extra: dict[str, float] = {}
        for i in range(self.accum):
            xm = x[i * self.micro : (i + 1) * self.micro]
            sync = i == self.accum - 1 or not isinstance(self.net, nn.parallel.DistributedDataParallel)
            with (contextlib.nullcontext() if sync else self.net.no_sync()), self._autocast():
                loss, metrics = loss_fn(self.net, xm, self.gen)
            (loss / self.accum).backward()
            total += loss.item() / self.accum
            for key, value in metrics.items():
                extra[key] = extra.get(key, 0.0) + float(value) / self.accum
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return total, extra

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean validation loss over a fixed set of blocks with fixed noise: a function of the
        weights and the run's seed only, whatever the number of processes.

        ``train.eval_blocks`` blocks spaced evenly over the validation blocks (so every file of a
        ``data.valid`` folder contributes), whatever the batch size, are cut into chunks of
        ``EVAL_CHUNK`` dealt to the processes in turn; chunk ``j``'s noise is seeded by
        ``(seed, j)`` and the chunk losses are summed in chunk order on every process.
        """
        blocks, order = self.valid_blocks, self.valid_order
        if len(order) == 0:
            return None
        n = min(len(order), self.cfg.train.eval_blocks)
        picked = np.asarray(order)[np.linspace(0, len(order) - 1, n).round().astype(np.int64)]
        chunks = [picked[i : i + EVAL_CHUNK] for i in range(0, n, EVAL_CHUNK)]
        world, rank = self.info.world, self.info.rank
        rounds = -(-len(chunks) // world)  # under FSDP every process runs the same number of forward passes
        mine: list[tuple[int, float]] = []
        with self.inference_weights():
            for r in range(rounds):
                j = r * world + rank
                if j >= len(chunks) and not self.sharded:
                    break
                jj = min(j, len(chunks) - 1)
                gen = torch.Generator(device=self.info.device).manual_seed(self.cfg.seed * 1_000_003 + 12345 + jj)
                x = blocks.batch(chunks[jj]).to(self.info.device)
                with self._autocast():
                    loss, _ = self.method.loss(self.model.net, x, gen)
                if j < len(chunks):
                    mine.append((j, loss.item() * len(x)))
        total = dict(item for part in gather_objects(mine) for item in part)
        return sum(total[j] for j in range(len(chunks))) / n

    def fit(self) -> TrainResult:
        """Train to ``cfg.train.steps``; the run folder is released at the end, however it ends."""
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> TrainResult:
        t = self.cfg.train
        tokens_per_step = t.batch_size * self.cfg.model.seq_len
        bar = tqdm(total=t.steps, initial=self.step, disable=not self.progress, desc=f"train {self.cfg.model.kind}", dynamic_ncols=True)
        loggers = open_run_loggers(self.cfg, self.run_dir, self.step, self.info.is_main)  # TensorBoard / W&B besides metrics.jsonl
        start, start_step = time.perf_counter(), self.step
        loss = val = float("nan")
        window, extra_window = self.window, self.extra_window  # a resumed run's window goes on
        if self.step == 0 and t.steps > 0 and self.recipe.validate_at_start:
            record: dict[str, Any] = {}
            if (v := self._validate(record)) is not None:
                val = v
                self._log(record, loggers)
        while self.step < t.steps:
            loss = self._train_step()
            self.step += 1
            self.recipe.end_of_step(self)
            window.append(loss)
            for key, value in self.step_metrics.items():
                extra_window.setdefault(key, []).append(value)
            rate = (self.step - start_step) * tokens_per_step / max(1e-9, time.perf_counter() - start)
            record: dict[str, Any] = {}
            if self.step % t.log_every == 0 or self.step == t.steps:
                record.update(step=self.step, loss=sum(window) / len(window), lr=self.sched.get_last_lr()[0], tokens_per_s=rate)
                record.update({k: sum(v) / len(v) for k, v in extra_window.items()})  # the loss's own metrics
                window, extra_window = [], {}
            self.window, self.extra_window = window, extra_window
            if (t.eval_every and self.step % t.eval_every == 0) or self.step == t.steps:
                if (v := self._validate(record)) is not None:
                    val = v
            if record:
                self._log(record, loggers)
            if (t.save_every and self.step % t.save_every == 0) or self.step == t.steps:
                self.save()
            if t.sample_every and self.step % t.sample_every == 0 and self.step != t.steps:
                self.recipe.preview(self)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", val=f"{val:.3f}", tok_s=f"{rate:,.0f}", **{k: f"{v:.3g}" for k, v in self.step_metrics.items()})
        bar.close()
        loggers.close()
        seconds = time.perf_counter() - start
        if self.step > start_step:
            self.recipe.preview(self)
        return TrainResult(
            run_dir=str(self.run_dir),
            steps=self.step,
            final_loss=next((h["loss"] for h in reversed(self.history) if "loss" in h), loss),  # last logging window's mean
            val_loss=None if math.isnan(val) else val,
            best_val_loss=self.best_val,
            tokens_per_s=(self.step - start_step) * tokens_per_step / max(1e-9, seconds),
            seconds=seconds,
            history=self.history,
        )


def lock_run_folder(run_dir: Path, info: DistInfo, subfolders: tuple[str, ...] = ()) -> RunLock:
    """Rank 0 locks ``run_dir`` and clears what a killed run left in it and its ``subfolders``; every
    rank learns whether the lock was taken (so a refused launch fails everywhere instead of hanging)."""
    lock, error = RunLock(run_dir), None
    if info.is_main:
        try:
            lock.acquire()
            for folder in (run_dir, *(run_dir / sub for sub in subfolders)):
                for name in ckpt.clear_partial(folder):
                    say(f"removed {folder / name}, left by a killed run")
        except DlmError as e:
            error = str(e)
        except OSError as e:
            error = f"{run_dir}: cannot use this run folder ({e.strerror or e})"
    error = gather_objects(error)[0]
    if error is not None:
        lock.release()
        raise DlmError(error)
    return lock


def truncate_metrics(path: Path, step: int, tags: dict[str, Any] | None = None) -> None:
    """Drop a run's metric lines after ``step`` (written by a run killed later than its checkpoint;
    all of them for -1) and a last line the kill cut short. ``tags``: the fields that mark the run's
    lines in a shared file (e.g. a DLM-One stage); other lines stay."""
    tags = tags or {}
    rewrite_jsonl(path, lambda rec: rec.get("step", 0) <= step or any(rec.get(k) != v for k, v in tags.items()))


def resume_config(run_dir: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The saved config of a run folder with ``overrides`` applied (e.g. more ``train.steps``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise DlmError(f"{run_dir}: not a dlmkit run folder (no config.yaml): cannot resume")
    cfg = load_config(str(path))
    for item in overrides:
        apply_override(cfg, item)
    cfg.out_dir = str(run_dir)
    return cfg
