"""The one error type of the format layer."""

from __future__ import annotations


class FormatError(ValueError):
    """A file that is not valid GGUF (or safetensors): names the byte offset and the reason."""

    def __init__(self, reason: str, offset: int | None = None, path: str | None = None):
        self.reason = reason
        self.offset = offset
        self.path = path
        where = f" at byte {offset}" if offset is not None else ""
        name = f"{path}: " if path else ""
        super().__init__(f"{name}invalid file{where}: {reason}" if where or name else reason)
