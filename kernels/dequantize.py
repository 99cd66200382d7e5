"""Dequantize GGUF blocks to float32, one row at a time (bit-exact with the numpy reference).

Each `dequantize_row_<type>(src, dst)` takes one row of blocks (uint8, row_bytes) and writes
its weights (float32, n_in). Float operations follow ggml's order (e.g. (d * scale) * q - m)
without fused multiply-add, so every value rounds the same way as the reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import type_ids as T
from .scalar import bf16_to_f32, f16_to_f32, read_f16, read_u32
from .static import static_dispatch

f32 = np.float32


@njit(cache=True)
def dequantize_row_q4_0(src, dst):
    for b in range(dst.size // 32):
        o = b * 18
        d = read_f16(src, o)
        for j in range(16):
            q = np.int64(src[o + 2 + j])
            dst[b * 32 + j] = d * f32(np.int32(q & 0xF) - 8)
            dst[b * 32 + j + 16] = d * f32(np.int32(q >> 4) - 8)


@njit(cache=True)
def dequantize_row_q4_1(src, dst):
    for b in range(dst.size // 32):
        o = b * 20
        d = read_f16(src, o)
        m = read_f16(src, o + 2)
        for j in range(16):
            q = np.int64(src[o + 4 + j])
            dst[b * 32 + j] = d * f32(q & 0xF) + m
            dst[b * 32 + j + 16] = d * f32(q >> 4) + m


@njit(cache=True)
def dequantize_row_q5_0(src, dst):
    for b in range(dst.size // 32):
        o = b * 22
        d = read_f16(src, o)
        qh = np.int64(read_u32(src, o + 2))
        for j in range(16):
            q = np.int64(src[o + 6 + j])
            lo = np.int32(q & 0xF) | np.int32(((qh >> j) & 1) << 4)
            hi = np.int32(q >> 4) | np.int32(((qh >> (j + 16)) & 1) << 4)
            dst[b * 32 + j] = d * f32(lo - 16)
            dst[b * 32 + j + 16] = d * f32(hi - 16)


@njit(cache=True)
def dequantize_row_q5_1(src, dst):
    for b in range(dst.size // 32):
        o = b * 24
        d = read_f16(src, o)
        m = read_f16(src, o + 2)
        qh = np.int64(read_u32(src, o + 4))
        for j in range(16):
            q = np.int64(src[o + 8 + j])
            lo = np.int32(q & 0xF) | np.int32(((qh >> j) & 1) << 4)
            hi = np.int32(q >> 4) | np.int32(((qh >> (j + 16)) & 1) << 4)
            dst[b * 32 + j] = d * f32(lo) + m
            dst[b * 32 + j + 16] = d * f32(hi) + m


@njit(cache=True)
def dequantize_row_q8_0(src, dst):
    for b in range(dst.size // 32):
        o = b * 34
        d = read_f16(src, o)
        for j in range(32):
            dst[b * 32 + j] = d * f32(np.int8(np.uint8(src[o + 2 + j])))


@njit(cache=True)
def dequantize_row_q2_k(src, dst):
    # block: scales[16] (4-bit scale | 4-bit min << 4), qs[64] (2 bits), d, dmin
    for b in range(dst.size // 256):
        o = b * 84
        d = read_f16(src, o + 80)
        dmin = read_f16(src, o + 82)
        y = b * 256
        for n in range(2):  # two halves of 128 weights, each from 32 bytes of qs
            for shift4 in range(4):
                shift = 2 * shift4
                for half in range(2):
                    sc = np.int64(src[o + n * 8 + shift4 * 2 + half])
                    dl = d * f32(sc & 0xF)
                    ml = dmin * f32(sc >> 4)
                    for k in range(16):
                        q = (np.int64(src[o + 16 + n * 32 + half * 16 + k]) >> shift) & 3
                        dst[y + k] = dl * f32(q) - ml
                    y += 16


@njit(cache=True, forceinline=True)
def q3_k_scale(src, o, j):
    """Signed 6-bit scale j (0..15) of the Q3_K block at src[o] (scales at o + 96), minus 32."""
    s = o + 96
    lo = (np.int64(src[s + j]) & 0xF) if j < 8 else (np.int64(src[s + j - 8]) >> 4)
    hi = (np.int64(src[s + 8 + (j % 4)]) >> (2 * (j // 4))) & 3
    return np.int32(lo | (hi << 4)) - 32


@njit(cache=True)
def dequantize_row_q3_k(src, dst):
    # block: hmask[32], qs[64] (2 bits), scales[12] (16 packed 6-bit), d
    for b in range(dst.size // 256):
        o = b * 110
        d = read_f16(src, o + 108)
        y = b * 256
        sc_i = 0
        for n in range(2):
            for shift4 in range(4):
                shift = 2 * shift4
                m = 1 << (n * 4 + shift4)
                for half in range(2):
                    dl = d * f32(q3_k_scale(src, o, sc_i))
                    sc_i += 1
                    for k in range(16):
                        li = half * 16 + k
                        q = np.int32((np.int64(src[o + 32 + n * 32 + li]) >> shift) & 3)
                        if (np.int64(src[o + li]) & m) == 0:
                            q -= 4
                        dst[y + k] = dl * f32(q)
                    y += 16


@njit(cache=True, forceinline=True)
def k4_scale_min(src, s, j):
    """6-bit (scale, min) pair j (0..7) of the 12 packed bytes at src[s] (Q4_K / Q5_K)."""
    if j < 4:
        return np.int64(src[s + j]) & 63, np.int64(src[s + j + 4]) & 63
    sc = (np.int64(src[s + j + 4]) & 0xF) | ((np.int64(src[s + j - 4]) >> 6) << 4)
    mn = (np.int64(src[s + j + 4]) >> 4) | ((np.int64(src[s + j]) >> 6) << 4)
    return sc, mn


@njit(cache=True)
def dequantize_row_q4_k(src, dst):
    # block: d, dmin, scales[12], qs[128]
    for b in range(dst.size // 256):
        o = b * 144
        d = read_f16(src, o)
        dmin = read_f16(src, o + 2)
        for c in range(4):  # 64 weights per 32 bytes of qs: low nibbles then high nibbles
            sc1, m1 = k4_scale_min(src, o + 4, 2 * c)
            sc2, m2 = k4_scale_min(src, o + 4, 2 * c + 1)
            d1 = d * f32(sc1)
            dm1 = dmin * f32(m1)
            d2 = d * f32(sc2)
            dm2 = dmin * f32(m2)
            y = b * 256 + c * 64
            for k in range(32):
                q = np.int64(src[o + 16 + c * 32 + k])
                dst[y + k] = d1 * f32(q & 0xF) - dm1
                dst[y + 32 + k] = d2 * f32(q >> 4) - dm2


@njit(cache=True)
def dequantize_row_q5_k(src, dst):
    # block: d, dmin, scales[12], qh[32], qs[128]
    for b in range(dst.size // 256):
        o = b * 176
        d = read_f16(src, o)
        dmin = read_f16(src, o + 2)
        for c in range(4):
            sc1, m1 = k4_scale_min(src, o + 4, 2 * c)
            sc2, m2 = k4_scale_min(src, o + 4, 2 * c + 1)
            d1 = d * f32(sc1)
            dm1 = dmin * f32(m1)
            d2 = d * f32(sc2)
            dm2 = dmin * f32(m2)
            y = b * 256 + c * 64
            for k in range(32):
                q = np.int64(src[o + 48 + c * 32 + k])
                h = np.int64(src[o + 16 + k])
                lo = np.int32(q & 0xF) + np.int32(((h >> (2 * c)) & 1) << 4)
                hi = np.int32(q >> 4) + np.int32(((h >> (2 * c + 1)) & 1) << 4)
                dst[y + k] = d1 * f32(lo) - dm1
                dst[y + 32 + k] = d2 * f32(hi) - dm2


@njit(cache=True)
def dequantize_row_q6_k(src, dst):
    # block: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8), d
    for b in range(dst.size // 256):
        o = b * 210
        d = read_f16(src, o + 208)
        for n in range(2):
            ql = o + n * 64
            qh = o + 128 + n * 32
            sc = o + 192 + n * 8
            y = b * 256 + n * 128
            for k in range(32):
                i = k // 16
                h = np.int64(src[qh + k])
                q1 = np.int32((np.int64(src[ql + k]) & 0xF) | ((h & 3) << 4)) - 32
                q2 = np.int32((np.int64(src[ql + k + 32]) & 0xF) | (((h >> 2) & 3) << 4)) - 32
                q3 = np.int32((np.int64(src[ql + k]) >> 4) | (((h >> 4) & 3) << 4)) - 32
                q4 = np.int32((np.int64(src[ql + k + 32]) >> 4) | (((h >> 6) & 3) << 4)) - 32
                dst[y + k] = d * f32(np.int8(np.uint8(src[sc + i]))) * f32(q1)
                dst[y + k + 32] = d * f32(np.int8(np.uint8(src[sc + i + 2]))) * f32(q2)
                dst[y + k + 64] = d * f32(np.int8(np.uint8(src[sc + i + 4]))) * f32(q3)
                dst[y + k + 96] = d * f32(np.int8(np.uint8(src[sc + i + 6]))) * f32(q4)


@njit(cache=True)
def dequantize_row_f16(src, dst):
    # src: uint16 bits (n_in,)
    for i in range(dst.size):
        dst[i] = f16_to_f32(src[i])


@njit(cache=True)
def dequantize_row_bf16(src, dst):
    # src: uint16 bits (n_in,)
    for i in range(dst.size):
        dst[i] = bf16_to_f32(src[i])


DEQUANTIZE_ROW = {
    T.Q4_0: dequantize_row_q4_0,
    T.Q4_1: dequantize_row_q4_1,
    T.Q5_0: dequantize_row_q5_0,
    T.Q5_1: dequantize_row_q5_1,
    T.Q8_0: dequantize_row_q8_0,
    T.Q2_K: dequantize_row_q2_k,
    T.Q3_K: dequantize_row_q3_k,
    T.Q4_K: dequantize_row_q4_k,
    T.Q5_K: dequantize_row_q5_k,
    T.Q6_K: dequantize_row_q6_k,
    T.F16: dequantize_row_f16,
    T.BF16: dequantize_row_bf16,
}

# dequantize_row(qtype, src, dst) for a static qtype token: one row of blocks (uint8), or of
# F16/BF16 bits (uint16), to float32
dequantize_row = static_dispatch(DEQUANTIZE_ROW, "dequantize_row")


@njit(cache=True)
def dequantize_rows(qtype, raw, ids, out):
    """out[i] = dequantized raw[ids[i]]; raw (n_rows, row_bytes) uint8 blocks (or uint16 bits
    for F16/BF16), out (len(ids), n_in) float32; qtype a static token."""
    for i in range(ids.size):
        dequantize_row(qtype, raw[ids[i]], out[i])
