"""Networks: the shared transformer backbone and the HF causal-LM adapter (no training or sampling logic)."""
