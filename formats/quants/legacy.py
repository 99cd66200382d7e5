"""Legacy 32-weight block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.

Quantization is ggml's quantize_row_*_ref; block layouts are ggml-common.h's block_q*:
    Q4_0: d fp16, qs[16]              Q4_1: d fp16, m fp16, qs[16]
    Q5_0: d fp16, qh[4], qs[16]       Q5_1: d fp16, m fp16, qh[4], qs[16]
    Q8_0: d fp16, qs[32] int8         Q8_1: d fp16, s fp16 (= d * sum(qs)), qs[32] int8
Nibble j of qs holds weight j (low) and weight j + 16 (high); qh bit j is weight j's bit 4.
"""

from __future__ import annotations

import numpy as np

from ..ggml_types import GGMLType
from .base import (
    F32,
    QuantType,
    first_absmax,
    first_max,
    first_min,
    fp16_field,
    join_fields,
    read_fp16,
    round_half_away,
    safe_div,
    split_fields,
)

# ---------------------------------------------------------------- shared shape


def _absmax_scale(x: np.ndarray, divisor: float) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric types: d = (signed value of largest |x|) / divisor, and 1/d (0 when d is 0).
    x: (n, 32) -> d, id: (n, 1)."""
    d = (first_absmax(x) / F32(divisor))[:, None]
    return d, safe_div(F32(1.0), d)


def _range_scale(x: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max types: d = (max - min) / levels. x: (n, 32) -> d, 1/d, min: (n, 1)."""
    lo = first_min(x)[:, None]
    hi = first_max(x)[:, None]
    d = (hi - lo) / F32(levels)
    return d, safe_div(F32(1.0), d), lo


def _truncate(v: np.ndarray) -> np.ndarray:
    """C's float -> integer conversion (toward zero)."""
    return np.trunc(v).astype(np.int32)


def _pack_q4(q: np.ndarray) -> np.ndarray:
    """(n, 32) codes -> (n, 16) bytes: weight j low nibble, weight j + 16 high nibble."""
    q = q.astype(np.uint8)
    return (q[:, :16] & 0x0F) | ((q[:, 16:] & 0x0F) << 4)


def _unpack_q4(qs: np.ndarray) -> np.ndarray:
    """(n, 16) bytes -> (n, 32) int32 codes."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int32)


def _pack_high_bits(q: np.ndarray) -> np.ndarray:
    """(n, 32) 5-bit codes -> (n, 4) bytes: the little-endian uint32 of bit 4 of each code."""
    return np.packbits(((q >> 4) & 1).astype(np.uint8), axis=-1, bitorder="little")


def _unpack_high_bits(qh: np.ndarray) -> np.ndarray:
    """(n, 4) bytes -> (n, 32) int32 of 0/16."""
    return np.unpackbits(qh, axis=-1, bitorder="little").astype(np.int32) << 4


# ---------------------------------------------------------------- types


class Q4_0(QuantType, qtype=GGMLType.Q4_0):
    @classmethod
    def dequantize_blocks(cls, blocks):
        d, qs = split_fields(blocks, 2, 16)
        return (_unpack_q4(qs) - 8).astype(F32) * read_fp16(d)

    @classmethod
    def quantize_blocks(cls, x):
        d, inv_d = _absmax_scale(x, -8.0)
        q = np.minimum(15, _truncate(x * inv_d + F32(8.5)))
        return join_fields(fp16_field(d), _pack_q4(q))


class Q4_1(QuantType, qtype=GGMLType.Q4_1):
    @classmethod
    def dequantize_blocks(cls, blocks):
        d, m, qs = split_fields(blocks, 2, 2, 16)
        return _unpack_q4(qs).astype(F32) * read_fp16(d) + read_fp16(m)

    @classmethod
    def quantize_blocks(cls, x):
        d, inv_d, lo = _range_scale(x, 15)
        q = np.minimum(15, _truncate((x - lo) * inv_d + F32(0.5)))
        return join_fields(fp16_field(d), fp16_field(lo), _pack_q4(q))


class Q5_0(QuantType, qtype=GGMLType.Q5_0):
    @classmethod
    def dequantize_blocks(cls, blocks):
        d, qh, qs = split_fields(blocks, 2, 4, 16)
        q = _unpack_q4(qs) | _unpack_high_bits(qh)
        return (q - 16).astype(F32) * read_fp16(d)

    @classmethod
    def quantize_blocks(cls, x):
        d, inv_d = _absmax_scale(x, -16.0)
        q = np.minimum(31, _truncate(x * inv_d + F32(16.5)))
        return join_fields(fp16_field(d), _pack_high_bits(q), _pack_q4(q))


class Q5_1(QuantType, qtype=GGMLType.Q5_1):
    @classmethod
    def dequantize_blocks(cls, blocks):
        d, m, qh, qs = split_fields(blocks, 2, 2, 4, 16)
        q = _unpack_q4(qs) | _unpack_high_bits(qh)
        return q.astype(F32) * read_fp16(d) + read_fp16(m)

    @classmethod
    def quantize_blocks(cls, x):
        d, inv_d, lo = _range_scale(x, 31)
        # ggml stores (uint8_t)(v + 0.5f) here without clamping to 31
        q = _truncate((x - lo) * inv_d + F32(0.5)) & 0xFF
        return join_fields(fp16_field(d), fp16_field(lo), _pack_high_bits(q), _pack_q4(q))


def _quantize_q8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q8_0 / Q8_1 codes: d = max|x| / 127, q = roundf(x / d). -> d (n, 1), q (n, 32) int8."""
    d = (np.max(np.abs(x), axis=-1) / F32(127.0))[:, None]
    q = round_half_away(x * safe_div(F32(1.0), d)).astype(np.int8)
    return d, q


class Q8_0(QuantType, qtype=GGMLType.Q8_0):
    @classmethod
    def dequantize_blocks(cls, blocks):
        d, qs = split_fields(blocks, 2, 32)
        return qs.view(np.int8).astype(F32) * read_fp16(d)

    @classmethod
    def quantize_blocks(cls, x):
        d, q = _quantize_q8(x)
        return join_fields(fp16_field(d), q)


class Q8_1(QuantType, qtype=GGMLType.Q8_1):
    """ggml's activation type for Q4_1/Q5_1 dot products; s caches d * sum(qs)."""

    @classmethod
    def dequantize_blocks(cls, blocks):
        d, _s, qs = split_fields(blocks, 2, 2, 32)
        return qs.view(np.int8).astype(F32) * read_fp16(d)

    @classmethod
    def quantize_blocks(cls, x):
        d, q = _quantize_q8(x)
        s = q.astype(np.int32).sum(axis=-1).astype(F32)[:, None] * d
        return join_fields(fp16_field(d), fp16_field(s), q)
