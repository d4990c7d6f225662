"""Evaluation tasks that run models (perplexity, generative perplexity, MAUVE, lm-eval, latency, seq2seq)."""
