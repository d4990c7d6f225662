"""What a training recipe tells the engine (:class:`dlmkit.engine.loop.Engine`).

A recipe builds the run's tokenizer, data and model (the model its checkpoints publish), states
its further trained networks with their optimisers, one training step's loss (or the whole step),
its validation, its preview and what to do at the end of a step (a teacher refresh, a stage
change). The engine owns everything else: run folder and lock, resume of every RNG stream and
optimiser, accumulation, DDP/FSDP, AMP, EMA, metrics and checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # annotations only: the engine imports this module
    from dlmkit.engine.loop import Engine


class Recipe:
    """Defaults for a recipe that trains one model on its kind's loss; override what differs."""

    wrap = True  # under torchrun the engine wraps the model in DDP/FSDP; False: the recipe averages gradients itself
    higher_is_better = False  # of the validation figure (the best checkpoint keeps its optimum)
    validate_at_start = False  # the starting weights are a candidate for the best checkpoint too

    def setup(self, engine: Engine) -> None:
        """Set ``engine.tokenizer``, ``engine.model`` and the data (``engine.blocks``,
        ``engine.valid_blocks``, ``engine.valid_order``). Called once, rank 0 holding the run lock."""
        raise NotImplementedError

    def networks(self, engine: Engine) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
        """Trained modules besides the model, each with its optimiser (saved and resumed by name)."""
        return {}

    def loss(self, engine: Engine, net: nn.Module, x: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """The training loss of one micro-batch ``x`` (its randomness drawn from ``generator``)."""
        return engine.method.loss(net, x, generator)

    def train_step(self, engine: Engine, x: Tensor) -> tuple[float, dict[str, float]]:
        """One optimisation step on the batch ``x``: by default the model's optimiser on :meth:`loss`
        with gradient accumulation. A recipe with several optimisers replaces it."""
        return engine.accumulate(x, lambda net, xm, gen: self.loss(engine, net, xm, gen))

    def end_of_step(self, engine: Engine) -> None:
        """Called after every training step, with ``engine.step`` already counted."""

    def validate(self, engine: Engine) -> float | None:
        """The validation figure (lower is better): by default the kind's loss on the validation blocks."""
        return engine.evaluate()

    def tags(self, engine: Engine) -> dict[str, Any]:
        """Fields that mark this run's lines in a metrics file it shares (e.g. ``{"stage": 2}``)."""
        return {}

    def record(self, engine: Engine, record: dict[str, Any]) -> dict[str, Any]:
        """A metrics line as the recipe wants it written (by default unchanged)."""
        return record

    def preview(self, engine: Engine) -> Any:
        """Write a few samples of the current weights (optional)."""
        return None
