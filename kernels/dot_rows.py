"""Portable row kernels: one weight row (GGUF blocks, uint8) · quantized activations.

ggml's vec_dot_<w>_q8_0 / _q8_1 / _q8_K scheme in plain Numba: integer dot products per
block, scaled in float. Used for the rows of a matrix that do not fill a SIMD tile, for
types without a tiled kernel, and as the simplest correct path. Activations come from
quantize_activations (xq int8 (n_in,), xd, xs float32, xsum int32 sums or bsums).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import type_ids as T
from .dequantize import k4_scale_min, q3_k_scale
from .inline import inline
from .ops_math import fma32
from .scalar import bf16_to_f32, f16_to_f32, read_f16, read_u32
from .static import static_dispatch

f32 = np.float32
i32 = np.int32


@njit(cache=True)
def dot_q4_0(w, xq, xd, xs, xsum):
    acc = f32(0.0)
    for b in range(xd.size):
        o = b * 18
        isum = i32(0)
        for j in range(16):
            q = i32(w[o + 2 + j])
            isum += ((q & 0xF) - 8) * i32(xq[b * 32 + j]) + ((q >> 4) - 8) * i32(
                xq[b * 32 + 16 + j]
            )
        acc += read_f16(w, o) * xd[b] * f32(isum)
    return acc


@inline
def _lanes_fma(codes, xq, b, dd, lanes):
    """ggml's float order for a 32-weight block (as the tiles' legacy_exact_shape): lane k
    adds the sum of its 4 code products, scaled by dd, with one rounding."""
    for k in range(8):
        isum = i32(0)
        for j in range(4 * k, 4 * k + 4):
            isum += codes[j] * i32(xq[b * 32 + j])
        lanes[k] = fma32(f32(isum), dd, lanes[k])


@inline
def _hsum_lanes(lanes):
    """hsum_float_8's tree."""
    return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + (
        (lanes[1] + lanes[5]) + (lanes[3] + lanes[7])
    )


@njit(cache=True)
def dot_q4_1(w, xq, xd, xs, xsum):
    lanes = np.zeros(8, f32)
    codes = np.empty(32, i32)
    summs = f32(0.0)
    for b in range(xd.size):
        o = b * 20
        for j in range(16):
            q = i32(w[o + 4 + j])
            codes[j], codes[16 + j] = q & 0xF, q >> 4
        _lanes_fma(codes, xq, b, read_f16(w, o) * xd[b], lanes)
        summs = summs + read_f16(w, o + 2) * xs[b]
    return _hsum_lanes(lanes) + summs


@njit(cache=True)
def dot_q5_0(w, xq, xd, xs, xsum):
    lanes = np.zeros(8, f32)
    codes = np.empty(32, i32)
    for b in range(xd.size):
        o = b * 22
        qh = i32(read_u32(w, o + 2))
        for j in range(16):
            q = i32(w[o + 6 + j])
            codes[j] = ((q & 0xF) | (((qh >> j) & 1) << 4)) - 16
            codes[16 + j] = ((q >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16
        _lanes_fma(codes, xq, b, read_f16(w, o) * xd[b], lanes)
    return _hsum_lanes(lanes)


@njit(cache=True)
def dot_q5_1(w, xq, xd, xs, xsum):
    lanes = np.zeros(8, f32)
    codes = np.empty(32, i32)
    summs = f32(0.0)
    for b in range(xd.size):
        o = b * 24
        qh = i32(read_u32(w, o + 4))
        for j in range(16):
            q = i32(w[o + 8 + j])
            codes[j] = (q & 0xF) | (((qh >> j) & 1) << 4)
            codes[16 + j] = (q >> 4) | (((qh >> (j + 16)) & 1) << 4)
        _lanes_fma(codes, xq, b, read_f16(w, o) * xd[b], lanes)
        summs = summs + read_f16(w, o + 2) * xs[b]
    return _hsum_lanes(lanes) + summs


@njit(cache=True)
def dot_q8_0(w, xq, xd, xs, xsum):
    lanes = np.zeros(8, f32)
    codes = np.empty(32, i32)
    for b in range(xd.size):
        o = b * 34
        for j in range(32):
            codes[j] = i32(np.int8(w[o + 2 + j]))
        _lanes_fma(codes, xq, b, read_f16(w, o) * xd[b], lanes)
    return _hsum_lanes(lanes)


@njit(cache=True)
def dot_q2_k(w, xq, xd, xs, xsum):
    acc = f32(0.0)
    for b in range(xd.size):
        o = b * 84
        isum = i32(0)
        msum = i32(0)
        for g in range(16):  # groups of 16 weights; g = n*8 + shift4*2 + half
            n, rest = divmod(g, 8)
            shift4, half = divmod(rest, 2)
            sc = i32(w[o + g])
            gsum = i32(0)
            for k in range(16):
                q = (i32(w[o + 16 + n * 32 + half * 16 + k]) >> (2 * shift4)) & 3
                gsum += q * i32(xq[b * 256 + g * 16 + k])
            isum += (sc & 0xF) * gsum
            msum += (sc >> 4) * xsum[b * 16 + g]
        d = read_f16(w, o + 80) * xd[b]
        dmin = read_f16(w, o + 82) * xd[b]
        acc += d * f32(isum) - dmin * f32(msum)
    return acc


@njit(cache=True)
def dot_q3_k(w, xq, xd, xs, xsum):
    acc = f32(0.0)
    for b in range(xd.size):
        o = b * 110
        isum = i32(0)
        for g in range(16):
            n, rest = divmod(g, 8)
            shift4, half = divmod(rest, 2)
            m = 1 << (n * 4 + shift4)
            gsum = i32(0)
            for k in range(16):
                li = half * 16 + k
                q = (i32(w[o + 32 + n * 32 + li]) >> (2 * shift4)) & 3
                if (w[o + li] & m) == 0:
                    q -= 4
                gsum += q * i32(xq[b * 256 + g * 16 + k])
            isum += q3_k_scale(w, o, g) * gsum
        acc += read_f16(w, o + 108) * xd[b] * f32(isum)
    return acc


@njit(cache=True)
def dot_q45_k(w, xq, xd, xs, xsum, has_high_bit):
    """Q4_K (has_high_bit False) and Q5_K (True): same block apart from the qh bit plane."""
    block = 176 if has_high_bit else 144
    qs_at = 48 if has_high_bit else 16
    acc = f32(0.0)
    acc_min = f32(0.0)
    for b in range(xd.size):
        o = b * block
        isum = i32(0)
        msum = i32(0)
        for j in range(8):  # sub-blocks of 32: c = j // 2 picks 32 bytes, j % 2 the nibble
            c, nib = divmod(j, 2)
            sc, mn = k4_scale_min(w, o + 4, j)
            ssum = i32(0)
            for k in range(32):
                q = (i32(w[o + qs_at + c * 32 + k]) >> (4 * nib)) & 0xF
                if has_high_bit:
                    q |= ((i32(w[o + 16 + k]) >> j) & 1) << 4
                ssum += q * i32(xq[b * 256 + j * 32 + k])
            isum += i32(sc) * ssum
            msum += i32(mn) * (xsum[b * 16 + 2 * j] + xsum[b * 16 + 2 * j + 1])
        d = read_f16(w, o) * xd[b]
        dmin = read_f16(w, o + 2) * xd[b]
        if has_high_bit:
            acc += d * f32(isum) - dmin * f32(msum)
        else:  # Q4_K as llama.cpp's repacked gemv (tile_dots.SPLIT_MIN): two sums
            acc = fma32(f32(isum), d, acc)
            acc_min = fma32(f32(msum), dmin, acc_min)
    return acc if has_high_bit else acc - acc_min


@njit(cache=True)
def dot_q6_k(w, xq, xd, xs, xsum):
    # ggml's order (vec_dot_q6_K_q8_K on AVX2, as the tiles' q6_k_exact_shape): 8 lanes; lane
    # l sums the scaled products of weights 128n + 32p + 4l .. + 3 (n < 2, p < 4) less 32 times
    # the scaled activation sums of groups 2l and 2l + 1, then fma(lane, d_w * d_x) per block
    lanes = np.zeros(8, f32)
    for b in range(xd.size):
        o = b * 210
        for lane in range(8):
            isum = i32(0)
            for n in range(2):
                for part in range(4):
                    gsum = i32(0)
                    for t in range(4):
                        k = 4 * lane + t  # byte of the 32 at 128n + 32part
                        ql = i32(w[o + n * 64 + (part & 1) * 32 + k]) >> (4 * (part >> 1))
                        qh = i32(w[o + 128 + n * 32 + k]) >> (2 * part)
                        q = (ql & 0xF) | ((qh & 3) << 4)
                        gsum += q * i32(xq[b * 256 + n * 128 + part * 32 + k])
                    g = n * 8 + part * 2 + lane // 4
                    isum += i32(np.int8(w[o + 192 + g])) * gsum
            for g in (2 * lane, 2 * lane + 1):
                isum -= 32 * i32(np.int8(w[o + 192 + g])) * xsum[b * 16 + g]
            lanes[lane] = fma32(f32(isum), read_f16(w, o + 208) * xd[b], lanes[lane])
    return _hsum_lanes(lanes)


@njit(cache=True)
def dot_q4_k(w, xq, xd, xs, xsum):
    return dot_q45_k(w, xq, xd, xs, xsum, False)


@njit(cache=True)
def dot_q5_k(w, xq, xd, xs, xsum):
    return dot_q45_k(w, xq, xd, xs, xsum, True)


DOT_ROW = {
    T.Q4_0: dot_q4_0,
    T.Q4_1: dot_q4_1,
    T.Q5_0: dot_q5_0,
    T.Q5_1: dot_q5_1,
    T.Q8_0: dot_q8_0,
    T.Q2_K: dot_q2_k,
    T.Q3_K: dot_q3_k,
    T.Q4_K: dot_q4_k,
    T.Q5_K: dot_q5_k,
    T.Q6_K: dot_q6_k,
}

# dot_row(qtype, w, xq, xd, xs, xsum) -> float32 for a static qtype token: one row of blocks
# (uint8) . one token's quantized activations
dot_row = static_dispatch(DOT_ROW, "dot_row")


@njit(cache=True, fastmath=True)
def dot_float_row(kind, w, x):
    """One F32 row (kind 0), or F16 (1) / BF16 (2) row of uint16 bits, . x (n_in,)."""
    acc = f32(0.0)
    if kind == 0:
        for k in range(w.size):
            acc += f32(w[k]) * x[k]
    elif kind == 1:
        for k in range(w.size):
            acc += f16_to_f32(np.uint16(w[k])) * x[k]
    else:
        for k in range(w.size):
            acc += bf16_to_f32(np.uint16(w[k])) * x[k]
    return acc
