"""Symmetric k-quants: Q3_K, Q6_K and the activation type Q8_K (256-weight super-blocks).

weight = d * sc[g] * q with signed group scales sc. Quantization is ggml's
quantize_row_q{3,6,8}_K_ref. Layouts (ggml-common.h):
    Q3_K: hmask[32] (bit 2 of each code), qs[64] (low 2 bits), scales[12] (16 six-bit), d fp16
    Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] int8, d fp16
    Q8_K: d float32, qs[256] int8, bsums[16] int16 (sums of 16 codes, for dot products)
"""

from __future__ import annotations

import numpy as np

from ..ggml_types import QK_K, GGMLType
from .base import (
    F32,
    GROUP_MAX_EPS,
    QuantType,
    first_absmax,
    fp16_field,
    fp16_round,
    join_fields,
    nearest_int,
    pack_bits,
    pack_crumbs,
    pack_nibbles,
    read_fp16,
    split_fields,
    unpack_bits,
    unpack_crumbs,
    unpack_nibbles,
)
from .search import make_q3_quants, make_qx_quants


def _requantize(x, d, L, nmax):
    """Codes for the stored scales: round(x / d) in [-nmax, nmax-1], offset by nmax; groups
    whose d is 0 keep the search's codes. x, L: (n, n_groups, k); d: (n, n_groups)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        l = np.clip(nearest_int(x / d[..., None]), -nmax, nmax - 1) + nmax
    return np.where((d != 0)[..., None], l, L)


def _scaled(d_field, sc, q):
    """(d * sc) * q per group, as ggml's dequantize_row_q{3,6}_K. q: (n, 16, 16)."""
    dl = read_fp16(d_field) * sc.astype(F32)
    return (dl[..., None] * q.astype(F32)).reshape(q.shape[0], QK_K)


def _to_int8(v: np.ndarray) -> np.ndarray:
    """C's int -> int8_t conversion (wraps)."""
    return ((v + 128) & 0xFF) - 128


# ---------------------------------------------------------------- Q3_K


def _pack_q3_scales(l: np.ndarray) -> np.ndarray:
    """(n, 16) six-bit scales -> 12 bytes: low nibbles of 0-7 and 8-15 share bytes 0-7,
    bits 4-5 of scale 4g + k go to bits 2g of byte 8 + k."""
    l = l.astype(np.uint8)
    low = (l[:, :8] & 0x0F) | ((l[:, 8:] & 0x0F) << 4)
    top = (l >> 4).reshape(-1, 4, 4)  # [g, k]
    high = top[:, 0] | (top[:, 1] << 2) | (top[:, 2] << 4) | (top[:, 3] << 6)
    return np.concatenate([low, high], axis=-1)


def _unpack_q3_scales(b: np.ndarray) -> np.ndarray:
    """(n, 12) bytes -> (n, 16) signed scales (six-bit value - 32)."""
    low = np.concatenate([b[:, :8] & 0x0F, b[:, :8] >> 4], axis=-1).astype(np.int32)
    high = np.stack([(b[:, 8:] >> (2 * g)) & 3 for g in range(4)], axis=1).reshape(-1, 16)
    return (low | (high.astype(np.int32) << 4)) - 32


class Q3_K(QuantType, qtype=GGMLType.Q3_K):
    @classmethod
    def dequantize_blocks(cls, blocks):
        n = blocks.shape[0]
        hmask, qs, scales, d = split_fields(blocks, QK_K // 8, QK_K // 4, 12, 2)
        low = unpack_crumbs(qs.reshape(n, 2, 32)).reshape(n, QK_K).astype(np.int32)
        high = unpack_bits(hmask).reshape(n, QK_K).astype(np.int32)  # bit p // 32 of p % 32
        q = low - 4 * (1 - high)  # a clear high bit means -4
        return _scaled(d, _unpack_q3_scales(scales), q.reshape(n, 16, 16))

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        xg = x.reshape(n * 16, 16)
        scales, L = make_q3_quants(xg, 4)
        scales, L = scales.reshape(n, 16), L.reshape(n, 16, 16)

        max_scale = first_absmax(scales)
        has_scale = max_scale != 0
        iscale = (F32(-32.0) / np.where(has_scale, max_scale, F32(1.0)))[:, None]
        l = np.clip(_to_int8(nearest_int(iscale * scales)), -32, 31) + 32
        sc_bytes = np.where(has_scale[:, None], _pack_q3_scales(l), np.uint8(0))
        d_val = np.where(has_scale, F32(1.0) / iscale[:, 0], F32(0.0))

        d = fp16_round(d_val)[:, None] * _unpack_q3_scales(sc_bytes).astype(F32)
        L = _requantize(xg.reshape(n, 16, 16), d, L, 4).reshape(n, QK_K)

        hmask = pack_bits((L > 3).reshape(n, 8, 32))  # code bit 2 of weight p: bit p//32 of p%32
        qs = pack_crumbs((L & 3).reshape(n, 2, 4, 32)).reshape(n, 64)
        return join_fields(hmask, qs, sc_bytes, fp16_field(d_val))


# ---------------------------------------------------------------- Q6_K


class Q6_K(QuantType, qtype=GGMLType.Q6_K):
    @classmethod
    def dequantize_blocks(cls, blocks):
        n = blocks.shape[0]
        ql, qh, scales, d = split_fields(blocks, QK_K // 2, QK_K // 4, QK_K // 16, 2)
        # weight 128h + 32k + l: nibble k // 2 of ql[64h + 32(k % 2) + l], crumb k of qh[32h + l]
        low = unpack_nibbles(ql.reshape(n, 2, 64)).reshape(n, 2, 4, 32)
        high = unpack_crumbs(qh.reshape(n, 2, 32))
        q = (low | (high << 4)).astype(np.int32) - 32
        return _scaled(d, scales.view(np.int8), q.reshape(n, 16, 16))

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        xg = x.reshape(n * 16, 16)
        scales, L = make_qx_quants(xg, 32)
        scales, L = scales.reshape(n, 16), L.reshape(n, 16, 16)

        max_scale = first_absmax(scales)
        zero_block = np.abs(max_scale) < GROUP_MAX_EPS
        iscale = (F32(-128.0) / np.where(zero_block, F32(1.0), max_scale))[:, None]
        sc = _to_int8(np.minimum(127, nearest_int(iscale * scales)))
        d_val = F32(1.0) / iscale[:, 0]

        d = fp16_round(d_val)[:, None] * sc.astype(F32)
        L = _requantize(xg.reshape(n, 16, 16), d, L, 32).reshape(n, 2, 4, 32)

        ql = pack_nibbles(L[:, :, 0:2], L[:, :, 2:4]).reshape(n, 128)
        qh = pack_crumbs(L >> 4).reshape(n, 64)
        out = join_fields(ql, qh, sc.astype(np.int8), fp16_field(d_val))
        out[zero_block] = 0  # ggml writes an all-zero block
        return out


# ---------------------------------------------------------------- Q8_K


class Q8_K(QuantType, qtype=GGMLType.Q8_K):
    @classmethod
    def dequantize_blocks(cls, blocks):
        d, qs, _bsums = split_fields(blocks, 4, QK_K, QK_K // 16 * 2)
        return np.ascontiguousarray(d).view("<f4") * qs.view(np.int8).astype(F32)

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        mx = first_absmax(x)
        zero = mx == 0
        iscale = F32(-127.0) / np.where(zero, F32(1.0), mx)
        q = np.minimum(127, nearest_int(iscale[:, None] * x))
        q = np.where(zero[:, None], 0, q).astype(np.int8)
        # ggml leaves bsums of an all-zero block unwritten; we write zeros
        bsums = q.reshape(n, 16, 16).astype(np.int32).sum(axis=-1).astype("<i2")
        d = np.where(zero, F32(0.0), F32(1.0) / iscale).astype("<f4")[:, None]
        return join_fields(d, q, bsums)
