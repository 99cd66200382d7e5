"""GGUF files, the quant-type table, metadata keys and numpy reference quantization.

numpy only: importing this package never compiles anything.
"""

from .errors import FormatError
from .ggml_types import QK_K, TYPE_INFO, GGMLType, ggml_type, row_nbytes, tensor_nbytes, type_info
from .keys import FileType, GGUFValueType, Keys, TokenType

__all__ = [
    "FormatError",
    "GGMLType",
    "GGUFValueType",
    "FileType",
    "Keys",
    "QK_K",
    "TYPE_INFO",
    "TokenType",
    "ggml_type",
    "row_nbytes",
    "tensor_nbytes",
    "type_info",
]
