"""k-quants with a scale and a min per group: Q2_K, Q4_K, Q5_K (256-weight super-blocks).

weight = d * sc[g] * q - dmin * m[g], with sc, m small integers per group and d, dmin fp16.
Quantization is ggml's quantize_row_q{2,4,5}_K_ref: make_qkx2_quants per group, the group
scales and mins quantized against the largest of each, then every weight requantized with
the stored (rounded) scales. Layouts (ggml-common.h):
    Q2_K: scales[16] (sc low nibble, m high nibble), qs[64] (2-bit), d, dmin
    Q4_K: d, dmin, scales[12] (6-bit sc and m for 8 groups), qs[128] (4-bit)
    Q5_K: d, dmin, scales[12], qh[32] (bit 4 of each code), qs[128]
"""

from __future__ import annotations

import numpy as np

from ..ggml_types import QK_K, GGMLType
from .base import (
    F32,
    QuantType,
    fp16_field,
    fp16_round,
    join_fields,
    nearest_int,
    pack_bits,
    pack_crumbs,
    pack_nibbles,
    read_fp16,
    safe_div,
    seq_sum,
    split_fields,
    unpack_bits,
    unpack_crumbs,
    unpack_nibbles,
)
from .search import make_qkx2_quants

# ---------------------------------------------------------------- shared shape


def _positive_max(v: np.ndarray) -> np.ndarray:
    """(n, k) -> (n,): ggml's `if (v > m) m = v` from m = 0: the largest value, or 0."""
    m = v.max(axis=-1)
    return np.where(m > 0, m, F32(0.0))


def _requantize(x, d, dm, L, nmax):
    """Codes for the stored scales: l = round((x + dm) / d) in [0, nmax]; groups whose d is 0
    keep the search's codes. x, L: (n, n_groups, k); d, dm: (n, n_groups)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        l = np.clip(nearest_int((x + dm[..., None]) / d[..., None]), 0, nmax)
    return np.where((d != 0)[..., None], l, L)


def _affine(blocks_d, blocks_dmin, sc, m, q):
    """(d * sc) * q - dmin * m, as ggml's dequantize_row_q*_K. q: (n, n_groups, k)."""
    dl = read_fp16(blocks_d) * sc.astype(F32)
    ml = read_fp16(blocks_dmin) * m.astype(F32)
    return (dl[..., None] * q.astype(F32) - ml[..., None]).reshape(q.shape[0], -1)


def _quantize_k6_scales(x: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """Q4_K / Q5_K: search per 32-weight group, store 6-bit scales and mins.
    x: (n, 256) -> d, dmin fields (n, 2), scale bytes (n, 12), codes (n, 8, 32)."""
    n = x.shape[0]
    xg = x.reshape(n * 8, 32)
    av_x = np.sqrt(seq_sum(xg * xg) / F32(32.0))
    weights = av_x[:, None] + np.abs(xg)
    scales, mins, L = make_qkx2_quants(xg, weights, nmax, rmin, rdelta, nstep, use_mad=False)
    scales, mins, L = scales.reshape(n, 8), mins.reshape(n, 8), L.reshape(n, 8, 32)

    max_scale, max_min = _positive_max(scales), _positive_max(mins)
    inv_scale = safe_div(F32(63.0), max_scale)[:, None]
    inv_min = safe_div(F32(63.0), max_min)[:, None]
    ls = np.minimum(63, nearest_int(inv_scale * scales) & 0xFF)
    lm = np.minimum(63, nearest_int(inv_min * mins) & 0xFF)
    d = fp16_field(max_scale / F32(63.0))
    dmin = fp16_field(max_min / F32(63.0))

    L = _requantize(
        xg.reshape(n, 8, 32),
        fp16_round(max_scale / F32(63.0))[:, None] * ls.astype(F32),
        fp16_round(max_min / F32(63.0))[:, None] * lm.astype(F32),
        L,
        nmax,
    )
    return d, dmin, _pack_k6_scales(ls, lm), L


def _pack_k6_scales(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """8 six-bit scales and mins -> 12 bytes: groups 0-3 in bytes 0-7 (top 2 bits carry the
    high bits of groups 4-7), low nibbles of groups 4-7 in bytes 8-11."""
    ls, lm = ls.astype(np.uint8), lm.astype(np.uint8)
    head = np.concatenate(
        [ls[:, :4] | ((ls[:, 4:] >> 4) << 6), lm[:, :4] | ((lm[:, 4:] >> 4) << 6)], axis=-1
    )
    tail = (ls[:, 4:] & 0x0F) | ((lm[:, 4:] & 0x0F) << 4)
    return np.concatenate([head, tail], axis=-1)


def _unpack_k6_scales(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12) bytes -> sc, m: (n, 8) (ggml get_scale_min_k4 for j = 0..7)."""
    lo, mid, hi = b[:, 0:4], b[:, 4:8], b[:, 8:12]
    sc = np.concatenate([lo & 63, (hi & 0x0F) | ((lo >> 6) << 4)], axis=-1)
    m = np.concatenate([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], axis=-1)
    return sc, m


# ---------------------------------------------------------------- types


class Q2_K(QuantType, qtype=GGMLType.Q2_K):
    @classmethod
    def dequantize_blocks(cls, blocks):
        n = blocks.shape[0]
        scales, qs, d, dmin = split_fields(blocks, 16, 64, 2, 2)
        # weight 128h + 32k + l is field k of byte 32h + l
        q = unpack_crumbs(qs.reshape(n, 2, 32)).reshape(n, 16, 16)
        return _affine(d, dmin, scales & 0x0F, scales >> 4, q)

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        xg = x.reshape(n * 16, 16)
        scales, mins, L = make_qkx2_quants(xg, np.abs(xg), 3, -0.5, 0.1, 15, use_mad=True)
        scales, mins, L = scales.reshape(n, 16), mins.reshape(n, 16), L.reshape(n, 16, 16)

        max_scale, max_min = _positive_max(scales), _positive_max(mins)
        q4scale = F32(15.0)
        ls = nearest_int(safe_div(q4scale, max_scale)[:, None] * scales)
        lm = nearest_int(safe_div(q4scale, max_min)[:, None] * mins)
        ls = np.where((max_scale > 0)[:, None], ls, 0)
        lm = np.where((max_min > 0)[:, None], lm, 0)
        sc_bytes = ((ls | (lm << 4)) & 0xFF).astype(np.uint8)
        d_val = np.where(max_scale > 0, max_scale / q4scale, F32(0.0))
        dmin_val = np.where(max_min > 0, max_min / q4scale, F32(0.0))

        L = _requantize(
            xg.reshape(n, 16, 16),
            fp16_round(d_val)[:, None] * (sc_bytes & 0x0F).astype(F32),
            fp16_round(dmin_val)[:, None] * (sc_bytes >> 4).astype(F32),
            L,
            3,
        )
        qs = pack_crumbs(L.reshape(n, 2, 4, 32)).reshape(n, 64)
        return join_fields(sc_bytes, qs, fp16_field(d_val), fp16_field(dmin_val))


class Q4_K(QuantType, qtype=GGMLType.Q4_K):
    @classmethod
    def dequantize_blocks(cls, blocks):
        n = blocks.shape[0]
        d, dmin, scales, qs = split_fields(blocks, 2, 2, 12, QK_K // 2)
        # weight 64c + 32t + l is nibble t of byte 32c + l
        q = unpack_nibbles(qs.reshape(n, 4, 32)).reshape(n, 8, 32)
        sc, m = _unpack_k6_scales(scales)
        return _affine(d, dmin, sc, m, q)

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        d, dmin, scales, L = _quantize_k6_scales(x, 15, -1.0, 0.1, 20)
        L = L.reshape(n, 4, 2, 32)
        qs = pack_nibbles(L[:, :, 0], L[:, :, 1]).reshape(n, 128)
        return join_fields(d, dmin, scales, qs)


class Q5_K(QuantType, qtype=GGMLType.Q5_K):
    @classmethod
    def dequantize_blocks(cls, blocks):
        n = blocks.shape[0]
        d, dmin, scales, qh, qs = split_fields(blocks, 2, 2, 12, QK_K // 8, QK_K // 2)
        q = unpack_nibbles(qs.reshape(n, 4, 32)).reshape(n, 8, 32)
        q = q | (unpack_bits(qh) << 4)  # bit g of qh[l] is bit 4 of weight 32g + l
        sc, m = _unpack_k6_scales(scales)
        return _affine(d, dmin, sc, m, q)

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        d, dmin, scales, L = _quantize_k6_scales(x, 31, -0.5, 0.1, 15)
        qh = pack_bits(L >> 4)
        L = L.reshape(n, 4, 2, 32)
        qs = pack_nibbles(L[:, :, 0], L[:, :, 1]).reshape(n, 128)
        return join_fields(d, dmin, scales, qh, qs)
