"""Training recipes on the engine: plain training, TCS and DLM-One distillation."""
