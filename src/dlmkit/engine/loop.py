"""The training loop shared by every model kind.

One process on a CPU, or several processes, GPUs and nodes under ``torchrun`` (DDP, or FSDP for
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
from dataclasses import asdict, dataclass, field
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

from dlmkit.engine.config import RunConfig, dump_yaml, load_config
from dlmkit.data.blocks import BlockSampler, PackedBlocks
from dlmkit.data.corpus import iter_documents, resolve_paths, tokenize_corpus
from dlmkit.data.tokenizer import Tokenizer, build_tokenizer
from dlmkit.errors import DlmError
from dlmkit.io import append_jsonl, rewrite_jsonl, write_text
from dlmkit.methods.base import Specials, get_method_class
from dlmkit.hub.model import DlmModel, read_weights
from dlmkit.networks.transformer import BackboneConfig
from dlmkit.hub import checkpoint as ckpt
from dlmkit.hub.load import load as load_model
from dlmkit.generate.preview import preview_texts
from dlmkit.engine.distributed import DistInfo, barrier, gather_objects, init_distributed, mean_across
from dlmkit.engine.ema import EMA
from dlmkit.engine.loggers import open_run_loggers
from dlmkit.engine.runlock import RunLock
from dlmkit.runtime import default_cache_dir

LossFn = Callable[[Any, nn.Module, Tensor, torch.Generator], tuple[Tensor, dict[str, float]]]
FULL = StateDictOptions(full_state_dict=True)
FULL_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)


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


def prepare_tokenizer(cfg: RunConfig, run_dir: Path, info: DistInfo) -> Tokenizer:
    """The run's tokenizer: loaded from the run folder, or built (rank 0) and saved there."""
    folder = run_dir / "tokenizer"
    if info.is_main and not (folder / "tokenizer.json").is_file():
        corpus = None
        if cfg.tokenizer.kind == "bpe" and (cfg.data.format or get_method_class(cfg.model.kind).data_format) == "seq2seq":
            from dlmkit.data.seq2seq import load_pairs

            paths = [cfg.data.train] if isinstance(cfg.data.train, str) else cfg.data.train
            corpus = (text for path in paths for pair in load_pairs(path, cfg.data.src_field, cfg.data.trg_field) for text in pair)
        elif cfg.tokenizer.kind == "bpe":
            corpus = iter_documents(cfg.data.train, text_field=cfg.data.text_field, doc_split=cfg.data.doc_split)
        build_tokenizer(cfg.tokenizer, corpus).save(folder)
    barrier()
    return Tokenizer.load(folder)


def prepare_data(cfg: RunConfig, tokenizer: Tokenizer, info: DistInfo) -> tuple[PackedBlocks, PackedBlocks, np.ndarray]:
    """Training blocks, and the validation blocks with the indices to use: the held-out split of
    the training text, or every block of ``data.valid`` when it is set."""
    if (cfg.data.format or get_method_class(cfg.model.kind).data_format) == "seq2seq":
        from dlmkit.data.seq2seq_blocks import prepare_seq2seq

        return prepare_seq2seq(cfg, tokenizer)
    cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()
    kw = dict(text_field=cfg.data.text_field, doc_split=cfg.data.doc_split)
    if info.is_main:  # tokenise once; the other ranks read the cache
        tokenize_corpus(cfg.data.train, tokenizer, cache, **kw)
        if cfg.data.valid:
            tokenize_corpus(cfg.data.valid, tokenizer, cache, **kw)
    barrier()
    L = cfg.model.seq_len
    frac = 0.0 if cfg.data.valid else cfg.data.valid_fraction
    train = PackedBlocks(tokenize_corpus(cfg.data.train, tokenizer, cache, **kw), L, valid_fraction=frac, seed=cfg.seed)
    if not cfg.data.valid:
        return train, train, train.valid
    valid = PackedBlocks(tokenize_corpus(cfg.data.valid, tokenizer, cache, **kw), L, valid_fraction=0.0, seed=cfg.seed)
    return train, valid, valid.train


def build_model(cfg: RunConfig, tokenizer: Tokenizer) -> DlmModel:
    """A fresh model of ``cfg.model.kind`` sized by ``cfg.model`` for ``tokenizer``'s vocabulary."""
    m = cfg.model
    backbone = BackboneConfig(
        vocab_size=tokenizer.vocab_size,
        n_layers=m.n_layers,
        d_model=m.d_model,
        n_heads=m.n_heads,
        d_cond=m.d_cond,
        mlp_ratio=m.mlp_ratio,
        dropout=m.dropout,
        seq_len=m.seq_len,
        tie_weights=m.tie_weights,
    )
    specials = Specials(eos=tokenizer.eos_id, pad=tokenizer.pad_id, mask=tokenizer.mask_id, sep=tokenizer.sep_id)
    return DlmModel.build(m.kind, backbone, specials, asdict(cfg.diffusion))


def load_start(cfg: RunConfig) -> tuple[DlmModel, Tokenizer]:
    """The model ``model.init_from`` names, with its tokenizer; ``cfg.model`` is set to its kind and shape."""
    path = cfg.model.init_from
    assert path
    model, tokenizer = load_model(path)
    if not isinstance(model, DlmModel):
        raise DlmError(f"model.init_from={path}: a Hugging Face causal LM cannot start a dlmkit run "
                       "(give a dlmkit run or checkpoint, or a released SEDD / MDLM folder)")
    describe_model(cfg, model)
    return model, tokenizer


def describe_model(cfg: RunConfig, model: DlmModel) -> None:
    """Set ``cfg.model``'s kind and shape to ``model``'s (what the run's config.yaml records)."""
    b = model.config["backbone"]
    cfg.model.kind = model.kind
    for name in ("n_layers", "d_model", "n_heads", "d_cond", "mlp_ratio", "dropout", "seq_len", "tie_weights"):
        setattr(cfg.model, name, b[name])


class Trainer:
    """Holds a run's model, optimiser, data order and RNGs; ``fit()`` trains to ``cfg.train.steps``."""

    def __init__(
        self, cfg: RunConfig, *, resume: bool = False, progress: bool = True, loss_fn: LossFn | None = None,
        start: tuple[DlmModel, Tokenizer] | None = None,
    ):
        """``start``: the (model, tokenizer) of ``model.init_from`` when the caller already loaded it."""
        self.info = init_distributed()
        self.loss_fn = loss_fn  # replaces method.loss in training steps (evaluation keeps the kind's own loss)
        self.step_metrics: dict[str, float] = {}
        self.run_dir = Path(cfg.out_dir)
        if not cfg.data.train:
            raise DlmError("no training data: set data.train=PATH (files, folders, globs or jsonl)")
        resolve_paths(cfg.data.train)  # a missing path fails before the run folder is made
        if resume and not (self.run_dir / "config.yaml").is_file():
            raise DlmError(f"{self.run_dir}: not a dlmkit run folder (no config.yaml): cannot resume")
        self.lock = RunLock(self.run_dir)
        self._lock_run()
        try:
            self._setup(cfg, resume, progress, start)
        except BaseException:
            self.close()
            raise

    def _setup(self, cfg: RunConfig, resume: bool, progress: bool, start: tuple[DlmModel, Tokenizer] | None) -> None:
        if not resume and ckpt.step_folders(self.run_dir):
            raise DlmError(f"{self.run_dir} already holds a run: pass --resume to continue it or choose another out_dir")
        if start is None and cfg.model.init_from:
            start = load_start(cfg)
        elif start is not None:
            describe_model(cfg, start[0])  # overrides given after the caller's load do not change the model
        if cfg.train.schedule_steps is not None and cfg.train.schedule_steps < 1:
            raise DlmError(f"train.schedule_steps must be at least 1 (or null: train.steps), got {cfg.train.schedule_steps}")
        if self.info.is_main:
            if not resume:  # a resumed run's config.yaml changes only once its checkpoint is accepted
                if (self.run_dir / "metrics.jsonl").is_file():  # a run killed before its first checkpoint: start over
                    say(f"{self.run_dir} holds no checkpoint: starting over (its metrics.jsonl is reset)")
                    rewrite_jsonl(self.run_dir / "metrics.jsonl", lambda rec: False)
                write_text(self.run_dir / "config.yaml", dump_yaml(cfg))
            if start is not None and not (self.run_dir / "tokenizer" / "tokenizer.json").is_file():
                start[1].save(self.run_dir / "tokenizer")
        self.cfg = cfg
        self.progress = progress and self.info.is_main
        t = cfg.train
        world = self.info.world
        micro = t.micro_batch or t.batch_size // world
        if t.batch_size % (world * micro):
            raise DlmError(f"train.batch_size={t.batch_size} is not a multiple of processes ({world}) x train.micro_batch ({micro})")
        self.micro, self.accum = micro, t.batch_size // (world * micro)
        torch.manual_seed(cfg.seed)
        self.tokenizer = prepare_tokenizer(cfg, self.run_dir, self.info)
        self.blocks, self.valid_blocks, self.valid_order = prepare_data(cfg, self.tokenizer, self.info)
        if start is not None and start[1].fingerprint != self.tokenizer.fingerprint:
            raise DlmError(f"model.init_from={cfg.model.init_from}: its tokenizer is not this run's ({self.run_dir / 'tokenizer'})")
        self.model = start[0] if start is not None else build_model(cfg, self.tokenizer)
        self.model.to(self.info.device).train()
        self.method = self.model.method
        self.method.require("training")
        self.sharded = self.info.world > 1 and cfg.train.distributed == "fsdp"
        self.net = self._wrap(self.model.net)
        decay = [p for n, p in self.model.net.named_parameters() if p.ndim >= 2 and "embed" not in n]
        no_decay = [p for n, p in self.model.net.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
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
        self.step = 0
        self.best_val: float | None = None
        self.history: list[dict[str, Any]] = []
        self.window: list[float] = []  # training losses since the last logged step
        self.extra_window: dict[str, list[float]] = {}
        if resume:
            self._restore()
            if self.info.is_main:
                write_text(self.run_dir / "config.yaml", dump_yaml(cfg))

    def _lock_run(self) -> None:
        """Rank 0 locks the run folder and clears what a killed run left; every rank learns whether
        the lock was taken (so a refused launch fails everywhere instead of hanging)."""
        error = None
        if self.info.is_main:
            try:
                self.lock.acquire()
                for folder in (self.run_dir, self.run_dir / "checkpoints", self.run_dir / "tokenizer", self.run_dir / "samples"):
                    for name in ckpt.clear_partial(folder):
                        say(f"removed {folder / name}, left by a killed run")
            except DlmError as e:
                error = str(e)
            except OSError as e:
                error = f"{self.run_dir}: cannot use this run folder ({e.strerror or e})"
        error = gather_objects(error)[0]
        if error is not None:
            self.lock.release()
            raise DlmError(error)

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
                rewrite_jsonl(self.run_dir / "metrics.jsonl", lambda rec: False)
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
            _truncate_metrics(self.run_dir / "metrics.jsonl", self.step)
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

    def save(self) -> None:
        weights, tensors, meta = self._state()
        if not self.info.is_main:
            return
        folder = self.run_dir / "checkpoints" / f"step_{self.step:07d}"
        ckpt.save_checkpoint(folder, self.model, self.tokenizer, weights, tensors, meta)
        ckpt.prune(self.run_dir, self.cfg.train.keep_last)
        ckpt.clear_partial(folder.parent)

    @contextlib.contextmanager
    def _inference_weights(self) -> Iterator[None]:
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
        total = 0.0
        extra: dict[str, float] = {}
        for i in range(self.accum):
            xm = x[i * self.micro : (i + 1) * self.micro]
            sync = i == self.accum - 1 or not isinstance(self.net, nn.parallel.DistributedDataParallel)
            with (contextlib.nullcontext() if sync else self.net.no_sync()), self._autocast():
                if self.loss_fn is None:
                    loss, metrics = self.method.loss(self.net, xm, self.gen)
                else:
                    loss, metrics = self.loss_fn(self.method, self.net, xm, self.gen)
            (loss / self.accum).backward()
            total += loss.item() / self.accum
            for key, value in metrics.items():
                extra[key] = extra.get(key, 0.0) + float(value) / self.accum
        self.step_metrics = extra
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return mean_across(total, self.info.device)

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean validation loss over a fixed set of blocks with fixed noise: a function of the
        weights and the run's seed only, whatever the number of processes.

        The first ``train.eval_batches`` chunks of ``train.micro_batch`` blocks (``train.batch_size``
        when 0) are dealt to the processes in turn; chunk ``j``'s noise is seeded by ``(seed, j)``
        and the chunk losses are summed in chunk order on every process.
        """
        blocks, order = self.valid_blocks, self.valid_order
        if len(order) == 0:
            return None
        t = self.cfg.train
        size = t.micro_batch or t.batch_size
        n = min(len(order), t.eval_batches * size)
        chunks = [order[i : i + size] for i in range(0, n, size)]
        world, rank = self.info.world, self.info.rank
        rounds = -(-len(chunks) // world)  # under FSDP every process runs the same number of forward passes
        mine: list[tuple[int, float]] = []
        with self._inference_weights():
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

    def write_samples(self, n: int = 4) -> Path | None:
        """Sample ``n`` sequences with the current (EMA) weights into ``samples/step_N.txt``.

        Under FSDP every rank runs the sampler (each forward pass is collective); rank 0 writes.
        """
        if not (self.info.is_main or self.sharded):
            return None
        gen = torch.Generator(device=self.info.device).manual_seed(self.cfg.seed)
        with self._inference_weights(), torch.no_grad():
            texts = preview_texts(
                self.model, self.tokenizer, n=n, length=self.cfg.model.seq_len, steps=self.cfg.train.sample_steps,
                generator=gen, blocks=self.valid_blocks, order=self.valid_order,
            )
        if not self.info.is_main:
            return None
        path = self.run_dir / "samples" / f"step_{self.step:07d}.txt"
        write_text(path, "".join(f"--- sample {i} ---\n{t}\n" for i, t in enumerate(texts)))
        return path

    def fit(self) -> TrainResult:
        """Train to ``cfg.train.steps``; the run folder is released at the end, however it ends."""
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> TrainResult:
        t = self.cfg.train
        metrics_path = self.run_dir / "metrics.jsonl"
        tokens_per_step = t.batch_size * self.cfg.model.seq_len
        bar = tqdm(total=t.steps, initial=self.step, disable=not self.progress, desc=f"train {self.cfg.model.kind}", dynamic_ncols=True)
        loggers = open_run_loggers(self.cfg, self.run_dir, self.step, self.info.is_main)  # TensorBoard / W&B besides metrics.jsonl
        start, start_step = time.perf_counter(), self.step
        loss = val = float("nan")
        window, extra_window = self.window, self.extra_window  # a resumed run's window goes on
        while self.step < t.steps:
            loss = self._train_step()
            self.step += 1
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
                v = self.evaluate()
                if v is not None:
                    val = v
                    record.update(step=self.step, val_loss=v)
                    if self.best_val is None or v < self.best_val:
                        self.best_val = v
                        weights = self._inference_state()
                        if self.info.is_main:
                            ckpt.save_checkpoint(self.run_dir / "checkpoints" / "best", self.model, self.tokenizer, weights)
            if record:
                self.history.append(record)
                if self.info.is_main:
                    append_jsonl(metrics_path, record)
                    loggers.log(record)
            if (t.save_every and self.step % t.save_every == 0) or self.step == t.steps:
                self.save()
            if t.sample_every and self.step % t.sample_every == 0 and self.step != t.steps:
                self.write_samples()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", val=f"{val:.3f}", tok_s=f"{rate:,.0f}", **{k: f"{v:.3g}" for k, v in self.step_metrics.items()})
        bar.close()
        loggers.close()
        seconds = time.perf_counter() - start
        if self.step > start_step:
            self.write_samples()
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


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after ``step`` by a run that was killed later than its checkpoint
    (and a last line the kill cut short)."""
    rewrite_jsonl(path, lambda rec: rec.get("step", 0) <= step)


def resume_config(run_dir: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The saved config of a run folder with ``overrides`` applied (e.g. more ``train.steps``)."""
    from dlmkit.engine.config import apply_override

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise DlmError(f"{run_dir}: not a dlmkit run folder (no config.yaml): cannot resume")
    cfg = load_config(str(path))
    for item in overrides:
        apply_override(cfg, item)
    cfg.out_dir = str(run_dir)
    return cfg


def train(
    cfg: RunConfig, *, resume: bool = False, progress: bool = True, loss_fn: LossFn | None = None,
) -> TrainResult:
    """Train (or resume) the run that ``cfg`` describes and return its summary.

    ``loss_fn(method, net, x0, generator) -> (loss, metrics)`` replaces the kind's training loss
    (e.g. a distillation objective); its metrics are averaged into ``metrics.jsonl`` and shown on
    the progress bar. It must draw its randomness from ``generator`` for runs to resume exactly.
    """
    return Trainer(cfg, resume=resume, progress=progress, loss_fn=loss_fn).fit()
