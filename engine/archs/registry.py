"""general.architecture name -> model class."""

from __future__ import annotations

from .base import UnsupportedModelError

ARCHITECTURES: dict[str, type] = {}


def register(name: str):
    def add(cls):
        ARCHITECTURES[name] = cls
        cls.arch_name = name
        return cls

    return add


def get_architecture(name: str | None) -> type:
    """The model class for an architecture name; a clear error naming the supported ones."""
    cls = ARCHITECTURES.get(name or "")
    if cls is None:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise UnsupportedModelError(
            f"unsupported model architecture {name!r}; supported: {supported}"
        )
    return cls
