"""Classes that register themselves by name: ``class Cosine(NoiseSchedule, name="cosine")``.

A base class derives from :class:`Registered` and sets ``registry`` (its name -> class table) and
``registry_what`` (what it holds, for the error); every subclass declared with ``name=`` is added
to that table, so a new schedule or sampler is one class and no list elsewhere.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, ClassVar

from dlmkit.errors import DlmError


class Registered:
    registry: ClassVar[dict[str, type]]
    registry_what: ClassVar[str]
    name: ClassVar[str]

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if name is not None:
            if name in cls.registry:
                raise DlmError(f"{cls.registry_what} {name!r} is registered twice")
            cls.name = name
            cls.registry[name] = cls


def lazy(ref: str) -> Callable[..., Any]:
    """The function ``"module:name"``, imported at its first call: a declared import that keeps
    heavy modules (torch, the models) out of argument parsing. Give ``ref`` as a string literal:
    ``tests/test_layers.py`` reads these declarations and checks their layer like any import."""
    module, _, name = ref.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = name
    return call
