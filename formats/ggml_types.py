"""The one table of GGML tensor types: id, block size (weights per block), bytes per block.

Sizes are written as byte arithmetic over the block's fields, as ggml-common.h declares them.
Q8_1 is 2 + 2 + 32 = 36 bytes (fp16 d and s), as ggml's static_assert says; gguf-py's table
says 40, which matches no block ggml writes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import FormatError

QK_K = 256  # weights per k-quant super-block
K_SCALE_SIZE = 12  # packed 6-bit scales and mins of Q4_K / Q5_K


class GGMLType(enum.IntEnum):
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39


@dataclass(frozen=True)
class TypeInfo:
    block_size: int  # weights per block
    type_size: int  # bytes per block
    quantized: bool  # True when weights are stored as blocks of codes with scales


# (block_size, bytes per block)
_SIZES: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.BF16: (1, 2),
    GGMLType.F64: (1, 8),
    GGMLType.I8: (1, 1),
    GGMLType.I16: (1, 2),
    GGMLType.I32: (1, 4),
    GGMLType.I64: (1, 8),
    GGMLType.Q4_0: (32, 2 + 16),
    GGMLType.Q4_1: (32, 2 + 2 + 16),
    GGMLType.Q5_0: (32, 2 + 4 + 16),
    GGMLType.Q5_1: (32, 2 + 2 + 4 + 16),
    GGMLType.Q8_0: (32, 2 + 32),
    GGMLType.Q8_1: (32, 2 + 2 + 32),
    GGMLType.Q2_K: (QK_K, QK_K // 16 + QK_K // 4 + 2 + 2),
    GGMLType.Q3_K: (QK_K, QK_K // 8 + QK_K // 4 + 12 + 2),
    GGMLType.Q4_K: (QK_K, 2 + 2 + K_SCALE_SIZE + QK_K // 2),
    GGMLType.Q5_K: (QK_K, 2 + 2 + K_SCALE_SIZE + QK_K // 8 + QK_K // 2),
    GGMLType.Q6_K: (QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),
    GGMLType.Q8_K: (QK_K, 4 + QK_K + QK_K // 16 * 2),
    GGMLType.IQ2_XXS: (QK_K, 2 + QK_K // 4),
    GGMLType.IQ2_XS: (QK_K, 2 + QK_K // 4 + QK_K // 32),
    GGMLType.IQ3_XXS: (QK_K, 2 + QK_K // 4 + QK_K // 8),
    GGMLType.IQ1_S: (QK_K, 2 + QK_K // 8 + QK_K // 16),
    GGMLType.IQ4_NL: (32, 2 + 16),
    GGMLType.IQ3_S: (QK_K, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
    GGMLType.IQ2_S: (QK_K, 2 + QK_K // 4 + QK_K // 16),
    GGMLType.IQ4_XS: (QK_K, 2 + 2 + QK_K // 2 + QK_K // 64),
    GGMLType.IQ1_M: (QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32),
    GGMLType.TQ1_0: (QK_K, 2 + 4 * 13),
    GGMLType.TQ2_0: (QK_K, 2 + 64),
    GGMLType.MXFP4: (32, 1 + 16),
}

_UNQUANTIZED = {
    GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.F64,
    GGMLType.I8, GGMLType.I16, GGMLType.I32, GGMLType.I64,
}  # fmt: skip

TYPE_INFO: dict[GGMLType, TypeInfo] = {
    t: TypeInfo(bs, ts, t not in _UNQUANTIZED) for t, (bs, ts) in _SIZES.items()
}

# Layout checks that fail at import if a size above is mistyped (as ggml's static_asserts).
assert TYPE_INFO[GGMLType.Q4_0].type_size == 18
assert TYPE_INFO[GGMLType.Q2_K].type_size == 84
assert TYPE_INFO[GGMLType.Q3_K].type_size == 110
assert TYPE_INFO[GGMLType.Q4_K].type_size == 144
assert TYPE_INFO[GGMLType.Q5_K].type_size == 176
assert TYPE_INFO[GGMLType.Q6_K].type_size == 210
assert TYPE_INFO[GGMLType.Q8_K].type_size == 292

# numpy dtype names of the types whose elements are plain scalars
SCALAR_DTYPES: dict[GGMLType, str] = {
    GGMLType.F32: "<f4",
    GGMLType.F16: "<f2",
    GGMLType.BF16: "<u2",  # numpy has no bfloat16: raw bits
    GGMLType.F64: "<f8",
    GGMLType.I8: "i1",
    GGMLType.I16: "<i2",
    GGMLType.I32: "<i4",
    GGMLType.I64: "<i8",
}


def ggml_type(value: int | str | GGMLType) -> GGMLType:
    """The GGMLType for an id or a name ("q4_k", "Q4_K", 12); a clear error for unknown ones."""
    if isinstance(value, GGMLType):
        return value
    if isinstance(value, str):
        try:
            return GGMLType[value.upper()]
        except KeyError:
            known = ", ".join(t.name for t in GGMLType)
            raise ValueError(f"unknown GGML type {value!r}; known: {known}") from None
    try:
        return GGMLType(int(value))
    except ValueError:
        raise FormatError(f"unknown GGML type id {value}") from None


def type_info(t: int | str | GGMLType) -> TypeInfo:
    return TYPE_INFO[ggml_type(t)]


def row_nbytes(t: int | str | GGMLType, n_per_row: int) -> int:
    """Bytes of one row of n_per_row weights; the row must be a whole number of blocks."""
    info = type_info(t)
    if n_per_row % info.block_size:
        raise ValueError(
            f"row of {n_per_row} is not a multiple of {ggml_type(t).name}'s block of "
            f"{info.block_size}"
        )
    return n_per_row // info.block_size * info.type_size


def tensor_nbytes(t: int | str | GGMLType, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor; shape is in ggml order (shape[0] is the contiguous row length)."""
    n_rows = 1
    for d in shape[1:]:
        n_rows *= d
    return row_nbytes(t, shape[0]) * n_rows
