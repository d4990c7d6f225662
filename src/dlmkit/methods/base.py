"""What a model kind is: how one network is trained, sampled and scored.

A kind (the AR baseline, SEDD, masked diffusion, ...) is a :class:`Method` subclass registered
under a name with :func:`register`. The training loop, the sampler command and the evaluation
suite only talk to this interface, so a new kind is one new module plus its registration.
What a kind can do is declared, not discovered by calling it: ``has_likelihood`` (``nll``),
``has_denoiser`` (``x0_log_probs``, ``fully_noised``), ``trainable`` (``loss`` trains it from
data) and ``prompts`` (what ``sample`` conditions on); ``require`` turns a missing capability into
the kind's own error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from dlmkit.errors import DlmError
from dlmkit.networks.transformer import BackboneConfig, Transformer
from dlmkit.sampling.output import SampleOutput


@dataclass(frozen=True)
class Specials:
    """Ids of the special tokens a kind may need (owned by the tokenizer)."""

    eos: int
    pad: int
    mask: int
    sep: int


UNCONDITIONAL, PREFIX, SPANS, SOURCE_ROWS = "unconditional", "prefix", "spans", "source_rows"
"""Prompt types: none; clean tokens at the first positions; clean tokens at any positions; seq2seq source rows."""


class Method(ABC):
    """One model kind. Subclasses set the class attributes and implement loss, sample and (with has_likelihood) nll."""

    kind: ClassVar[str]
    causal: ClassVar[bool] = False  # causal attention (AR) or bidirectional
    time_conditioned: ClassVar[bool] = True  # does the network take a noise level
    nll_is_bound: ClassVar[bool] = True  # nll() is an upper bound (diffusion) or exact (AR)
    extra_options: ClassVar[tuple[str, ...]] = ()  # sampler options accepted by sample()
    data_format: ClassVar[str] = "lm"  # "lm": packed text blocks; "seq2seq": [src sep trg] rows
    # declared capabilities
    has_likelihood: ClassVar[bool] = True  # nll() scores sequences (exact or a bound, see nll_is_bound)
    has_denoiser: ClassVar[bool] = False  # x0_log_probs() gives log p(x0 | x_t)
    trainable: ClassVar[bool] = True  # loss() trains it from data (False: a recipe makes it)
    prompts: ClassVar[frozenset[str]] = frozenset({UNCONDITIONAL, PREFIX, SPANS})  # what sample() conditions on
    instead: ClassVar[dict[str, str]] = {}  # capability -> require()'s error message (what to do instead)

    def __init__(self, vocab_size: int, specials: Specials, options: dict[str, Any] | None = None):
        self.vocab_size = vocab_size
        self.specials = specials
        self.options = dict(options or {})

    def require(self, capability: str) -> None:
        """Raise the kind's error unless it declares ``capability`` ("likelihood", "denoiser", "training")."""
        have = {"likelihood": self.has_likelihood, "denoiser": self.has_denoiser, "training": self.trainable}[capability]
        if not have:
            raise DlmError(self.instead.get(capability) or f"{self.kind} has no {capability}")

    def build_network(self, cfg: BackboneConfig) -> nn.Module:
        """The network this kind trains; the shared transformer unless a kind needs more."""
        return Transformer(cfg)

    @abstractmethod
    def loss(self, net: nn.Module, x0: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """Training loss for clean blocks ``x0`` [B, L]: a scalar in nats per token, and extra metrics."""

    @abstractmethod
    def sample(
        self,
        net: nn.Module,
        batch: int,
        length: int,
        *,
        steps: int,
        generator: torch.Generator,
        condition: Any = None,
        **options: Any,
    ) -> SampleOutput:
        """Draw ``batch`` sequences of ``length`` tokens, holding ``condition``'s tokens fixed."""

    def train_state(self) -> dict[str, Tensor]:
        """What training changes in the kind itself besides the weights (e.g. a loss-aware time
        sampler), saved in the training state so a resumed run continues exactly; none by default."""
        return {}

    def load_train_state(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`train_state` returned."""

    def x0_log_probs(self, net: nn.Module, clean_mask: Tensor | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """For kinds with ``has_denoiser``: ``fn(x_t, sigma)`` -> log p(x0 | x_t) [B, L, V], the positions in
        ``clean_mask`` (bool [B, L]) known to be clean."""
        self.require("denoiser")
        raise NotImplementedError(f"{self.kind} declares a denoiser but does not define x0_log_probs")

    def fully_noised(self, x0: Tensor, start: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """For kinds with ``has_denoiser``: ``x0`` [B, L] with positions ``start``.. drawn from the end of
        the forward process (t = 1), and the total noise sigma_bar(1) [B]: the input of
        :meth:`x0_log_probs`' function for one-step denoising from pure noise."""
        self.require("denoiser")
        raise NotImplementedError(f"{self.kind} declares a denoiser but does not define fully_noised")

    def nll(
        self,
        net: nn.Module,
        x0: Tensor,
        *,
        generator: torch.Generator,
        n_samples: int = 1,
        clean_mask: Tensor | None = None,
        estimator: str = "mc",
    ) -> tuple[Tensor, Tensor]:
        """Per-sequence negative log-likelihood in nats and its standard error.

        Sums over the positions not in ``clean_mask`` (bool [B, L]; True = given, held clean),
        so ``clean_mask`` over a context gives -log p(continuation | context). Exact for AR
        models (standard error 0; the given positions must then be a prefix); an upper bound
        for diffusion kinds, estimated over the noise level by Monte-Carlo (``estimator="mc"``,
        ``n_samples`` draws) or by Gauss-Legendre quadrature over the noise level
        (``"quadrature"``, ``n_samples`` nodes; its standard error is NaN). Only for kinds with
        ``has_likelihood``.
        """
        self.require("likelihood")
        raise NotImplementedError(f"{self.kind} declares a likelihood but does not define nll")


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a kind available under ``cls.kind``."""
    METHODS[cls.kind] = cls
    return cls


def get_method_class(kind: str) -> type[Method]:
    """The registered class for ``kind``; a clear error lists the known kinds.

    The built-in kinds are registered by ``dlmkit/methods/__init__.py``, which Python runs before
    this module can be imported."""
    try:
        return METHODS[kind]
    except KeyError:
        raise DlmError(f"unknown model kind '{kind}' (known: {', '.join(sorted(METHODS))})") from None

