"""The optional packages of the ``eval`` extra (nltk, sacrebleu, rouge-score, mauve, bert-score, lm-eval)."""

from __future__ import annotations

import importlib
from types import ModuleType

from dlmkit.errors import DlmError


def import_eval_dependency(module: str) -> ModuleType:
    """Import a module of the optional ``eval`` extra, or raise a one-line DlmError."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DlmError(f"{module} needs the eval extra: pip install 'dlmkit[eval]' ({exc})") from None
