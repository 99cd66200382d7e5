"""One module per architecture, registered by general.architecture."""

from . import gemma3, llama  # noqa: F401  (registers the architectures)
from .base import KVLayout, UnsupportedModelError
from .registry import ARCHITECTURES, get_architecture

__all__ = ["ARCHITECTURES", "KVLayout", "UnsupportedModelError", "get_architecture"]
