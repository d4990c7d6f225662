"""Plain training of every kind (``dlm train``): the recipe that builds the run's tokenizer, data
and model from its config (or starts from ``model.init_from``), trains on the kind's loss (or a
``loss_fn`` such as TCS's), validates on the kind's loss and previews a few samples."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from dlmkit.data.blocks import PackedBlocks
from dlmkit.data.corpus import iter_documents, resolve_paths, tokenize_corpus
from dlmkit.data.seq2seq import load_pairs
from dlmkit.data.seq2seq_blocks import prepare_seq2seq
from dlmkit.data.tokenizer import Tokenizer, build_tokenizer
from dlmkit.engine.config import RunConfig
from dlmkit.engine.distributed import DistInfo, barrier
from dlmkit.engine.loop import Engine, TrainResult
from dlmkit.engine.recipe import Recipe
from dlmkit.errors import DlmError
from dlmkit.generate.preview import preview_texts
from dlmkit.hub.load import load as load_model
from dlmkit.hub.model import DlmModel
from dlmkit.io import write_text
from dlmkit.methods.base import Specials, get_method_class
from dlmkit.networks.transformer import BackboneConfig
from dlmkit.runtime import default_cache_dir

LossFn = Callable[[Any, nn.Module, Tensor, torch.Generator], tuple[Tensor, dict[str, float]]]


def prepare_tokenizer(cfg: RunConfig, run_dir: Path, info: DistInfo) -> Tokenizer:
    """The run's tokenizer: loaded from the run folder, or built (rank 0) and saved there."""
    folder = run_dir / "tokenizer"
    if info.is_main and not (folder / "tokenizer.json").is_file():
        corpus = None
        if cfg.tokenizer.kind == "bpe" and (cfg.data.format or get_method_class(cfg.model.kind).data_format) == "seq2seq":
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


def write_preview(engine: Engine, n: int = 4) -> Path | None:
    """Sample ``n`` sequences with the current (EMA) weights into ``samples/step_N.txt``.

    Under FSDP every rank runs the sampler (each forward pass is collective); rank 0 writes.
    """
    if not (engine.info.is_main or engine.sharded):
        return None
    cfg = engine.cfg
    gen = torch.Generator(device=engine.info.device).manual_seed(cfg.seed)
    with engine.inference_weights(), torch.no_grad():
        texts = preview_texts(
            engine.model, engine.tokenizer, n=n, length=cfg.model.seq_len, steps=cfg.train.sample_steps,
            generator=gen, blocks=engine.valid_blocks, order=engine.valid_order,
        )
    if not engine.info.is_main:
        return None
    path = engine.run_dir / "samples" / f"step_{engine.step:07d}.txt"
    write_text(path, "".join(f"--- sample {i} ---\n{t}\n" for i, t in enumerate(texts)))
    return path


class Pretrain(Recipe):
    """Train the config's model on its kind's loss, or on ``loss_fn(method, net, x0, generator)``
    (evaluation keeps the kind's own loss). ``start``: the (model, tokenizer) of
    ``model.init_from`` when the caller already loaded it."""

    def __init__(self, loss_fn: LossFn | None = None, start: tuple[DlmModel, Tokenizer] | None = None):
        self.loss_fn, self.start = loss_fn, start

    def setup(self, engine: Engine) -> None:
        cfg, start = engine.cfg, self.start
        if start is None and cfg.model.init_from:
            start = load_start(cfg)
        elif start is not None:
            describe_model(cfg, start[0])  # overrides given after the caller's load do not change the model
        if engine.info.is_main and start is not None and not (engine.run_dir / "tokenizer" / "tokenizer.json").is_file():
            start[1].save(engine.run_dir / "tokenizer")
        engine.tokenizer = prepare_tokenizer(cfg, engine.run_dir, engine.info)
        engine.blocks, engine.valid_blocks, engine.valid_order = prepare_data(cfg, engine.tokenizer, engine.info)
        if start is not None and start[1].fingerprint != engine.tokenizer.fingerprint:
            raise DlmError(f"model.init_from={cfg.model.init_from}: its tokenizer is not this run's ({engine.run_dir / 'tokenizer'})")
        engine.model = start[0] if start is not None else build_model(cfg, engine.tokenizer)
        engine.model.method.require("training")  # a kind trained otherwise (dlm_one) says how

    def loss(self, engine: Engine, net: nn.Module, x: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        if self.loss_fn is None:
            return engine.method.loss(net, x, generator)
        return self.loss_fn(engine.method, net, x, generator)

    def preview(self, engine: Engine) -> Path | None:
        return write_preview(engine)


class Trainer(Engine):
    """The engine on the :class:`Pretrain` recipe."""

    def __init__(
        self, cfg: RunConfig, *, resume: bool = False, progress: bool = True, loss_fn: LossFn | None = None,
        start: tuple[DlmModel, Tokenizer] | None = None,
    ):
        if not cfg.data.train:
            raise DlmError("no training data: set data.train=PATH (files, folders, globs or jsonl)")
        resolve_paths(cfg.data.train)  # a missing path fails before the run folder is made
        super().__init__(cfg, Pretrain(loss_fn, start), resume=resume, progress=progress)


def train(
    cfg: RunConfig, *, resume: bool = False, progress: bool = True, loss_fn: LossFn | None = None,
) -> TrainResult:
    """Train (or resume) the run that ``cfg`` describes and return its summary.

    ``loss_fn(method, net, x0, generator) -> (loss, metrics)`` replaces the kind's training loss
    (e.g. a distillation objective); its metrics are averaged into ``metrics.jsonl`` and shown on
    the progress bar. It must draw its randomness from ``generator`` for runs to resume exactly.
    """
    return Trainer(cfg, resume=resume, progress=progress, loss_fn=loss_fn).fit()
