"""Generation from a loaded model: one :func:`generate` for every kind, AR included."""

from dlmkit.generate.prompt import Prefixes, Prompt, SourceRows, Spans, Unconditional
from dlmkit.generate.run import generate, target_ids
from dlmkit.sampling.output import SampleOutput

__all__ = ["Prefixes", "Prompt", "SampleOutput", "SourceRows", "Spans", "Unconditional", "generate", "target_ids"]
