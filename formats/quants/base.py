"""The registry of reference quant types and the block helpers they share.

Every type is a small class that registers itself with its GGMLType and defines only its own
block maths, vectorized over blocks:

    dequantize_blocks(blocks: (n_blocks, type_size) uint8) -> (n_blocks, block_size) float32
    quantize_blocks(x: (n_blocks, block_size) float32) -> (n_blocks, type_size) uint8

ggml computes in float32, one operation at a time, and sums loops left to right; the helpers
here keep numpy on the same path (float32 constants, sequential sums, ggml's nearest_int and
fp16 conversion), so the bytes come out identical, not just close.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..ggml_types import TYPE_INFO, GGMLType

REGISTRY: dict[GGMLType, type[QuantType]] = {}

F32 = np.float32
GROUP_MAX_EPS = F32(1e-15)  # ggml: a group whose |max| is below this is all zero


class QuantType:
    """One GGML type's block layout and its reference (de)quantization."""

    qtype: ClassVar[GGMLType]
    block_size: ClassVar[int]  # weights per block
    type_size: ClassVar[int]  # bytes per block

    def __init_subclass__(cls, qtype: GGMLType, **kwargs):
        super().__init_subclass__(**kwargs)
        if qtype in REGISTRY:
            raise RuntimeError(f"{qtype.name} registered twice")
        cls.qtype = qtype
        cls.block_size = TYPE_INFO[qtype].block_size
        cls.type_size = TYPE_INFO[qtype].type_size
        REGISTRY[qtype] = cls

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def quantize_blocks(cls, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# ---------------------------------------------------------------- block fields


def split_fields(blocks: np.ndarray, *sizes: int) -> list[np.ndarray]:
    """Cut (n, type_size) blocks into consecutive byte fields of the given sizes."""
    assert sum(sizes) == blocks.shape[-1], (sizes, blocks.shape)
    return np.split(blocks, np.cumsum(sizes)[:-1], axis=-1)


def join_fields(*fields: np.ndarray) -> np.ndarray:
    """(n, k_i) uint8 fields -> (n, sum k_i) uint8 blocks."""
    return np.concatenate([np.ascontiguousarray(f).view(np.uint8) for f in fields], axis=-1)


def read_fp16(field: np.ndarray) -> np.ndarray:
    """(n, 2) uint8 little-endian fp16 -> (n, 1) float32 (exact)."""
    return np.ascontiguousarray(field).view("<f2").astype(F32)


def fp16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> uint16 bits as ggml's fp32->fp16: round to nearest even, overflow to inf,
    NaN to sign | 0x7E00."""
    x = np.asarray(x, dtype=F32)
    with np.errstate(over="ignore", invalid="ignore"):
        h = x.astype("<f2").view(np.uint16)
    sign = (x.view(np.uint32) >> 16).astype(np.uint16) & np.uint16(0x8000)
    return np.where(np.isnan(x), sign | np.uint16(0x7E00), h)


def fp16_field(x: np.ndarray) -> np.ndarray:
    """(n,) or (n, 1) float32 -> (n, 2) uint8: the stored fp16 of each value."""
    return (
        fp16_bits(np.asarray(x, dtype=F32).reshape(-1)).astype("<u2").view(np.uint8).reshape(-1, 2)
    )


def fp16_round(x: np.ndarray) -> np.ndarray:
    """The float32 value ggml reads back after storing x as fp16."""
    return fp16_bits(x).view("<f2").astype(F32)


# ---------------------------------------------------------------- arithmetic


def nearest_int(v: np.ndarray) -> np.ndarray:
    """ggml's nearest_int: add 1.5 * 2**23 in float32 and read the low mantissa bits.
    Round half to even for |v| < 2**22; outside that range it wraps exactly as ggml does."""
    with np.errstate(over="ignore", invalid="ignore"):
        bits = (np.asarray(v, dtype=F32) + F32(12582912.0)).view(np.int32)
    return (bits & 0x007FFFFF) - 0x00400000


def round_half_away(v: np.ndarray) -> np.ndarray:
    """C roundf: halves away from zero (exact in float32, unlike floor(v + 0.5))."""
    a = np.abs(v)
    f = np.floor(a)
    return np.copysign(f + (a - f >= F32(0.5)).astype(F32), v)


def seq_sum(terms: np.ndarray) -> np.ndarray:
    """Sum over the last axis left to right in float32, as `float s = 0; s += t;` in C.
    (n, k) -> (n,). numpy's sum is pairwise, which rounds differently."""
    return np.cumsum(terms, axis=-1, dtype=F32)[..., -1] + F32(0.0)


def first_min(x: np.ndarray) -> np.ndarray:
    """(n, k) -> (n,): the value a C loop `if (x[i] < m) m = x[i]` keeps (first minimum)."""
    return np.take_along_axis(x, np.argmin(x, axis=-1)[:, None], axis=-1)[:, 0]


def first_max(x: np.ndarray) -> np.ndarray:
    """(n, k) -> (n,): the value a C loop `if (x[i] > m) m = x[i]` keeps (first maximum)."""
    return np.take_along_axis(x, np.argmax(x, axis=-1)[:, None], axis=-1)[:, 0]


def first_absmax(x: np.ndarray) -> np.ndarray:
    """(n, k) -> (n,): the signed value with the largest |x|, first one on ties; 0 when all
    are zero (ggml's `if (ax > amax) { amax = ax; max = x[i]; }` from amax = 0)."""
    v = np.take_along_axis(x, np.argmax(np.abs(x), axis=-1)[:, None], axis=-1)[:, 0]
    return np.where(v == 0, F32(0.0), v)


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den in float32 where den != 0; 0 elsewhere (callers discard those lanes)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, F32(1.0)), F32(0.0)).astype(F32)


# ---------------------------------------------------------------- bit packing


def unpack_nibbles(q: np.ndarray) -> np.ndarray:
    """(n, m) uint8 -> (n, 2, m): low nibbles, then high nibbles."""
    return np.stack([q & 0x0F, q >> 4], axis=-2)


def pack_nibbles(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The low 4 bits of lo and of hi -> one byte each."""
    return (lo.astype(np.uint8) & 0x0F) | ((hi.astype(np.uint8) & 0x0F) << 4)


def unpack_crumbs(q: np.ndarray) -> np.ndarray:
    """(n, m) uint8 -> (n, 4, m): 2-bit fields at shifts 0, 2, 4, 6."""
    return np.stack([(q >> s) & 3 for s in (0, 2, 4, 6)], axis=-2)


def pack_crumbs(l4: np.ndarray) -> np.ndarray:
    """(..., 4, m) values < 4 -> (..., m) uint8, field k at shift 2k."""
    l4 = l4.astype(np.uint8)
    return l4[..., 0, :] | (l4[..., 1, :] << 2) | (l4[..., 2, :] << 4) | (l4[..., 3, :] << 6)


def unpack_bits(q: np.ndarray) -> np.ndarray:
    """(n, m) uint8 -> (n, 8, m): bit b of byte j at [b, j]."""
    return np.stack([(q >> b) & 1 for b in range(8)], axis=-2)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(n, 8, m) of 0/1 -> (n, m) uint8, row b into bit b."""
    bits = bits.astype(np.uint8)
    out = np.zeros(bits.shape[:-2] + bits.shape[-1:], np.uint8)
    for b in range(8):
        out |= bits[..., b, :] << b
    return out
