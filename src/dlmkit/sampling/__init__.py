"""Samplers. Importing a kernel module here registers it (masked kernels: ``masked_kernels``)."""

from dlmkit.sampling import confidence  # noqa: F401  (registers the confidence-ordered masked sampler)
