"""The run driver: run folder, resolved config, resume, DDP/FSDP, AMP, EMA, metrics, RNG state."""
