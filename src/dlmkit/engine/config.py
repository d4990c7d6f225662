"""Run configuration: dataclasses, YAML presets and dotted command-line overrides.

A run is described by one :class:`RunConfig`. It is built from a preset name (``tiny``,
``small``, ``medium``: YAML files shipped inside the package) or a YAML path, then
``section.key=value`` overrides. Unknown keys and values of the wrong type are errors that name
the key, so a typo never trains the wrong model silently.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence, Union

import yaml

from dlmkit.checks import check_config, check_config_value
from dlmkit.data.tokenizer import TokenizerConfig
from dlmkit.errors import DlmError


@dataclass
class ModelConfig:
    """The network and the model kind that trains it (see ``dlmkit.methods``)."""

    kind: str = "ar"
    n_layers: int = 4
    d_model: int = 256
    n_heads: int = 4
    d_cond: int = 128  # width of the noise-level embedding that drives adaLN
    mlp_ratio: int = 4
    dropout: float = 0.0
    seq_len: int = 128  # context length; training blocks have this many tokens
    tie_weights: bool = False
    # Start from this model instead of a fresh one: a dlmkit run or checkpoint, or a released
    # SEDD / MDLM folder. Its kind, architecture, diffusion options, weights and tokenizer are
    # used, and the fields above are overwritten with its values when the run starts.
    init_from: Union[str, None] = None


@dataclass
class DataConfig:
    """Where the text comes from and how it becomes blocks."""

    train: Union[list[str], str, None] = None  # files, folders, globs, jsonl, saved datasets
    valid: Union[list[str], str, None] = None  # optional separate validation text
    text_field: str = "text"
    doc_split: str = "file"  # file | blank_line | line: what counts as one document
    valid_fraction: float = 0.05  # held-out share of the training blocks when valid is unset
    cache_dir: Union[str, None] = None  # token cache; default $DLM_CACHE or ~/.cache/dlmkit
    # seq2seq kinds (diffuseq): jsonl fields, and token caps (0: the default rule of
    # dlmkit.data.seq2seq_blocks); cut pairs are counted and reported, never hidden
    src_field: str = "src"
    trg_field: str = "trg"
    max_src_len: int = 0
    max_trg_len: int = 0
    format: str = ""  # "": the kind's own (packed text, or seq2seq rows for diffuseq); "seq2seq": [src sep trg] rows for any kind (an AR baseline)


@dataclass
class ContinuousConfig:
    """Options of the embedding-space Gaussian kinds (diffuseq); see dlmkit.methods.diffuseq."""

    emb_dim: int = 128  # width of the learnt word embeddings the diffusion runs in
    timesteps: int = 2000  # T
    schedule: str = "sqrt"  # sqrt | cosine | linear
    t_sampler: str = "uniform"  # uniform | lossaware
    x0_std: Union[float, None] = None  # noise of q(x_0 | w); None: sqrt(1 - abar_0); 0: off
    anchor_weight: float = 0.0  # Difformer anchor loss weight (0: DiffuSeq's loss)
    emb_init_std: float = 1.0  # N(0, std) init of the embeddings
    sampler: str = "ddim"  # ddim (respaced to --steps) | ddpm (all T steps)
    eta: float = 0.0  # DDIM noise
    clamp_step: Union[int, None] = 0  # clamp x0 to the nearest embedding for t >= this; null: never
    decode: str = "logits"  # logits (rounding head) | nearest (nearest embedding)


@dataclass
class DiffusionConfig:
    """Options of the discrete diffusion kinds (ignored by the AR baseline)."""

    schedule: str = ""  # "" picks the kind's default: loglinear (absorb/mdlm), geometric (uniform)
    eps: float = 1e-3  # log-linear schedule: sigma(1) = -log(eps)
    sigma_min: float = 1e-4  # geometric schedule
    sigma_max: float = 20.0
    t_sampling: str = "antithetic"  # uniform | antithetic
    sampler: str = ""  # "" picks the kind's default sampler
    clean_fraction: float = 0.0  # uniform kind: share of positions kept clean in training
    block_size: int = 16  # bd3lm: tokens per block (must divide model.seq_len; 1 = AR, seq_len = MDLM)
    clip_min: float = 1e-3  # bd3lm: training mask rates drawn in [clip_min, clip_max] (narrower: the clipped schedule)
    clip_max: float = 1.0
    continuous: ContinuousConfig = field(default_factory=ContinuousConfig)  # diffuseq (nested: reaches the kind's options)


@dataclass
class TrainConfig:
    """Optimisation, logging and checkpointing."""

    steps: int = 1000
    batch_size: int = 32  # global batch (sequences per optimiser step, all processes)
    micro_batch: int = 0  # sequences per forward pass per process; 0 = no accumulation
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup: int = 100
    schedule: str = "cosine"  # cosine | constant
    schedule_steps: int | None = None  # steps the cosine decays over; None: train.steps (a resume that changes train.steps keeps the run's)
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    ema: float = 0.0  # EMA decay of the weights; 0 disables
    eval_every: int = 200
    eval_blocks: int = 256  # validation set size in blocks, independent of batch size and processes
    save_every: int = 500
    keep_last: int = 2
    log_every: int = 10
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False
    distributed: str = "ddp"  # ddp | fsdp, when launched with torchrun
    sample_every: int = 0  # write samples every N steps; 0 = only at the end
    sample_steps: int = 64  # diffusion steps for those samples
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])  # + tensorboard, wandb (dlmkit.engine.loggers)
    wandb_project: str = "dlmkit"
    wandb_mode: str = "offline"  # offline (no network; `wandb sync` later) | online | disabled


@dataclass
class TCSConfig:
    """Target concrete score distillation from an AR teacher (see dlmkit.recipes.tcs)."""

    estimator: str = "topk"  # exact | topk | left: how p(y | x_-i) is estimated from the teacher
    top_k: int = 16  # topk: candidates from the teacher's left-context distribution (plus the true token)
    alpha: float = 1.0  # weight of the TCS term; 1 - alpha goes to the one-hot data loss
    teacher_batch: int = 64  # sequences per teacher forward pass when rescoring candidates


@dataclass
class SDTTConfig:
    """Self-distillation through time of an mdlm model (see dlmkit.recipes.sdtt)."""

    rounds: int = 3  # each round halves the sampling steps
    start_steps: int = 64  # the teacher's steps in the first round
    round_steps: int = 1000  # training steps per round (train.steps = rounds x round_steps)
    divergence: str = "kl"  # kl | rkl | mse | tvd (dlmkit.diffusion.sdtt)
    target: str = "law"  # law (the exact two-step law) | reference (the released code's target)
    refresh: str = "raw"  # raw | ema: the next round's teacher is the student's raw weights, or its EMA (then the student's too)


@dataclass
class DistillConfig:
    """Distillation runs: the teacher and each distiller's options."""

    teacher: Union[str, None] = None  # dlmkit AR run/checkpoint, HF causal-LM folder, .gguf, or smollm2
    tcs: TCSConfig = field(default_factory=TCSConfig)
    sdtt: SDTTConfig = field(default_factory=SDTTConfig)


@dataclass
class RunConfig:
    """Everything a run needs; saved resolved as ``config.yaml`` in the run folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    seed: int = 0
    out_dir: str = "runs/run"


def preset_names() -> list[str]:
    """Names of the YAML presets shipped inside the package (tiny, small, medium, ...)."""
    folder = Path(str(resources.files("dlmkit") / "configs"))
    return sorted(p.stem for p in folder.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The YAML file of a preset shipped with the package."""
    return Path(str(resources.files("dlmkit") / "configs" / f"{name}.yaml"))


def load_config(source: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Build a :class:`RunConfig` from a preset name or YAML path plus ``key=value`` overrides."""
    tree: dict[str, Any] = {}
    if source:
        path = preset_path(source) if source in preset_names() else Path(source)
        if not path.is_file():
            raise DlmError(f"no config '{source}': give a preset ({', '.join(preset_names())}) or a YAML file")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise DlmError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(tree, dict):
            raise DlmError(f"{path}: a config file must hold a mapping of sections")
    _reject_interpolation(tree, "")
    cfg = from_dict(RunConfig, tree)
    for item in overrides:
        apply_override(cfg, item)
    check_config(cfg)
    return cfg


def from_dict(cls: type, tree: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a nested dict, rejecting unknown keys and bad types."""
    if not isinstance(tree, dict):
        raise DlmError(f"config key '{prefix.rstrip('.')}' must be a mapping")
    obj = cls()
    for key, value in tree.items():
        _set_field(obj, key, value, prefix)
    return obj


def apply_run_options(cfg: RunConfig, overrides: Sequence[str] = (), data: Sequence[str] | None = None,
                      out_dir: str | None = None) -> None:
    """A new distillation run's command line on its config, in place: the ``key=value`` overrides,
    then ``--data`` (training text) and ``--out`` (run folder), which win over them."""
    for item in overrides:
        apply_override(cfg, item)
    if data:
        cfg.data.train = list(data)
    if out_dir:
        cfg.out_dir = out_dir


def apply_override(cfg: RunConfig, item: str) -> None:
    """Apply one ``dotted.key=value`` override in place; the value is parsed as YAML.

    The grammar is plain ``key=value``, not Hydra's: ``+key=``, ``++key=``, ``~key`` and ``${...}``
    interpolation are rejected with a one-line error (every key already exists, and the run's
    ``config.yaml`` records literal values, so a resumed run cannot resolve differently).
    """
    if item.startswith(("+", "~")):
        raise DlmError(f"override '{item}': Hydra's +key / ~key are not supported; every key already exists, set it with key=value")
    if "=" not in item:
        raise DlmError(f"override '{item}' is not of the form key=value")
    dotted, raw = item.split("=", 1)
    _reject_interpolation(raw, dotted)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    *parents, last = dotted.split(".")
    obj: Any = cfg
    walked = ""
    for name in parents:
        if not dataclasses.is_dataclass(obj) or name not in _field_types(type(obj)):
            raise DlmError(f"unknown config key '{walked + name}'")
        obj = getattr(obj, name)
        walked += name + "."
    if not dataclasses.is_dataclass(obj):
        raise DlmError(f"unknown config key '{dotted}'")
    _set_field(obj, last, value, walked)


def _reject_interpolation(value: Any, key: str) -> None:
    """``${...}`` is not resolved (see :func:`apply_override`): an error, never a literal folder name."""
    if isinstance(value, str) and "${" in value:
        raise DlmError(f"config key '{key}': ${{...}} interpolation is not supported; write the value itself (e.g. out_dir=runs/mdlm)")
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_interpolation(v, f"{key}.{k}" if key else str(k))
    if isinstance(value, list):
        for v in value:
            _reject_interpolation(v, key)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts (for YAML/JSON)."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Any) -> str:
    """The config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _set_field(obj: Any, key: str, value: Any, prefix: str) -> None:
    types_ = _field_types(type(obj))
    name = prefix + key
    if key not in types_:
        known = ", ".join(types_)
        raise DlmError(f"unknown config key '{name}': an unknown option (known here: {known})")
    typ = types_[key]
    if dataclasses.is_dataclass(typ):
        current = getattr(obj, key)
        if not isinstance(value, dict):
            raise DlmError(f"config key '{name}' is a section: give its keys, e.g. {name}.<key>=...")
        for k, v in value.items():
            _set_field(current, k, v, name + ".")
        return
    value = _coerce(value, typ, name)
    check_config_value(name, value)
    setattr(obj, key, value)


def _coerce(value: Any, typ: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``typ``; ints are accepted where floats are."""
    origin = typing.get_origin(typ)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(typ):
            try:
                return _coerce(value, option, name)
            except DlmError:
                continue
        raise DlmError(f"config key '{name}' has a value of the wrong type: {value!r} (expected {_type_name(typ)})")
    if typ is type(None):
        if value is None:
            return None
    elif origin is list:
        (item_type,) = typing.get_args(typ)
        if isinstance(value, list):
            return [_coerce(v, item_type, name) for v in value]
    elif typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    expected = {int: "an integer", float: "a number"}.get(typ, _type_name(typ))
    raise DlmError(f"config key '{name}' has a value of the wrong type: {value!r} is not {expected}")


def _type_name(typ: Any) -> str:
    args = typing.get_args(typ)
    if args and typing.get_origin(typ) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if typ is type(None):
        return "null"
    return getattr(typ, "__name__", str(typ))
