"""Per-type dot of one 16-row tile block with one token's quantized activations.

`tile_dot_<type>(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc)` returns facc + the block's
contribution to the 16 rows' outputs (F32x16). Arguments:
    qs, sc, dh   the weight tiles (repack.Tiles, flat): int32 quant words, int32 scale words,
                 uint16 fp16 halves; tb = tile * n_blocks + b indexes one tile block
    b            block index along the row (for the activations)
    xq           int32 (n_in/4,): the token's int8 activation codes, 4 per word
    xd           float32 activation scale per activation block (32 or 256 weights)
    xs, xsum     32-blocks: fp16(d*sum) float32 and the integer sums per block;
                 256-blocks: xsum holds the 16-weight bsums (xs unused)
Codes are unpacked to unsigned bytes (offsets like Q4_0's -8 are applied through the
activation sums), integer-dotted with the activations, then scaled in float.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import overload

from . import type_ids as T
from .simd import (
    dot_s8s8,
    dot_u8s8,
    fma,
    load_f16x16,
    load_i32x16,
    sext_byte,
    splat_f32,
    splat_i32,
    to_f32,
    zeros_i32x16,
)  # fmt: skip
from .static import StaticType

LOW4 = np.int32(0x0F0F0F0F)
BIT0 = np.int32(0x01010101)
LOW2 = np.int32(0x03030303)


@njit(inline="always")
def word(arr, tb, n_words, i):
    """Word i (16 lanes) of tile block tb in an array of n_words words per tile block."""
    return load_i32x16(arr, (tb * n_words + i) * 16)


@njit(inline="always")
def half(dh, tb, n_halves, i):
    return load_f16x16(dh, (tb * n_halves + i) * 16)


@njit(inline="always")
def act(xq, i):
    """Activation word i (4 int8 codes) broadcast to every lane."""
    return splat_i32(xq[i])


# ------------------------------------------------------------------ 32-weight blocks


@njit(inline="always")
def tile_dot_q8_0(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    acc = zeros_i32x16()
    for g in range(8):
        acc = dot_s8s8(isa, acc, word(qs, tb, 8, g), act(xq, b * 8 + g))
    return fma(to_f32(acc), half(dh, tb, 1, 0) * xd[b], facc)


@njit(inline="always")
def nibble_isum(isa, qs, tb, n_words, xq, b, has_high_bit):
    """Integer dot of a Q4_x/Q5_x block's unsigned codes (0..15 or 0..31) with the activations."""
    acc = zeros_i32x16()
    high = word(qs, tb, n_words, 4) if has_high_bit else zeros_i32x16()
    for v in range(4):
        w = word(qs, tb, n_words, v)
        lo = w & LOW4
        hi = (w >> 4) & LOW4
        if has_high_bit:
            lo = lo | (((high >> (2 * v)) & BIT0) << 4)
            hi = hi | (((high >> (2 * v + 1)) & BIT0) << 4)
        acc = dot_u8s8(isa, acc, lo, act(xq, b * 8 + v))
        acc = dot_u8s8(isa, acc, hi, act(xq, b * 8 + 4 + v))
    return acc


@njit(inline="always")
def tile_dot_q4_0(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    acc = nibble_isum(isa, qs, tb, 4, xq, b, False) - np.int32(8 * xsum[b])
    return fma(to_f32(acc), half(dh, tb, 1, 0) * xd[b], facc)


@njit(inline="always")
def tile_dot_q5_0(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    acc = nibble_isum(isa, qs, tb, 5, xq, b, True) - np.int32(16 * xsum[b])
    return fma(to_f32(acc), half(dh, tb, 1, 0) * xd[b], facc)


@njit(inline="always")
def tile_dot_q4_1(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    acc = nibble_isum(isa, qs, tb, 4, xq, b, False)
    facc = fma(half(dh, tb, 2, 1), splat_f32(xs[b]), facc)
    return fma(to_f32(acc), half(dh, tb, 2, 0) * xd[b], facc)


@njit(inline="always")
def tile_dot_q5_1(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    acc = nibble_isum(isa, qs, tb, 5, xq, b, True)
    facc = fma(half(dh, tb, 2, 1), splat_f32(xs[b]), facc)
    return fma(to_f32(acc), half(dh, tb, 2, 0) * xd[b], facc)


# ------------------------------------------------------------------ 256-weight super-blocks


@njit(inline="always")
def k4_scale_min(s0, s1, s2, j):
    """6-bit scale and min j (0..7) per lane of Q4_K/Q5_K's 12 packed bytes (words s0..s2)."""
    if j < 4:
        return (s0 >> (8 * j)) & 63, (s1 >> (8 * j)) & 63
    sh = 8 * (j - 4)
    scale = ((s2 >> sh) & 0xF) | (((s0 >> (sh + 6)) & 3) << 4)
    mn = ((s2 >> (sh + 4)) & 0xF) | (((s1 >> (sh + 6)) & 3) << 4)
    return scale, mn


@njit(inline="always")
def tile_dot_q45_k(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc, has_high_bit):
    """Q4_K (has_high_bit False) and Q5_K: quant words = [qh (Q5_K only)] + 32 qs words."""
    n_words = 40 if has_high_bit else 32
    qs_at = 8 if has_high_bit else 0
    s0, s1, s2 = word(sc, tb, 3, 0), word(sc, tb, 3, 1), word(sc, tb, 3, 2)
    isum = zeros_i32x16()
    msum = zeros_i32x16()
    for c in range(4):  # 32 bytes of qs: sub-block 2c in low nibbles, 2c + 1 in high nibbles
        acc_lo = zeros_i32x16()
        acc_hi = zeros_i32x16()
        for g in range(8):
            w = word(qs, tb, n_words, qs_at + c * 8 + g)
            lo = w & LOW4
            hi = (w >> 4) & LOW4
            if has_high_bit:
                high = word(qs, tb, n_words, g)
                lo = lo | (((high >> (2 * c)) & BIT0) << 4)
                hi = hi | (((high >> (2 * c + 1)) & BIT0) << 4)
            acc_lo = dot_u8s8(isa, acc_lo, lo, act(xq, b * 64 + c * 16 + g))
            acc_hi = dot_u8s8(isa, acc_hi, hi, act(xq, b * 64 + c * 16 + 8 + g))
        sc_lo, m_lo = k4_scale_min(s0, s1, s2, 2 * c)
        sc_hi, m_hi = k4_scale_min(s0, s1, s2, 2 * c + 1)
        isum = isum + acc_lo * sc_lo + acc_hi * sc_hi
        bs = b * 16 + c * 4  # bsums of the 4 groups of 16 in these 64 weights
        msum = msum + m_lo * np.int32(xsum[bs] + xsum[bs + 1])
        msum = msum + m_hi * np.int32(xsum[bs + 2] + xsum[bs + 3])
    facc = fma(to_f32(isum), half(dh, tb, 2, 0) * xd[b], facc)
    return fma(to_f32(msum), half(dh, tb, 2, 1) * (-xd[b]), facc)


@njit(inline="always")
def tile_dot_q6_k(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    """Quant words = 32 ql words then 16 qh words; scale words = 16 int8 scales."""
    isum = zeros_i32x16()
    for n in range(2):  # halves of 128 weights
        for p in range(2):  # ql bytes 32p..: low nibbles are part p, high nibbles part p + 2
            for i in range(2):  # groups of 16 weights
                acc_lo = zeros_i32x16()
                acc_hi = zeros_i32x16()
                for gg in range(4):
                    g = 4 * i + gg
                    ql = word(qs, tb, 48, n * 16 + p * 8 + g)
                    qh = word(qs, tb, 48, 32 + n * 8 + g)
                    lo = (ql & LOW4) | (((qh >> (2 * p)) & LOW2) << 4)
                    hi = ((ql >> 4) & LOW4) | (((qh >> (2 * p + 4)) & LOW2) << 4)
                    acc_lo = dot_u8s8(isa, acc_lo, lo, act(xq, b * 64 + n * 32 + p * 8 + g))
                    acc_hi = dot_u8s8(isa, acc_hi, hi, act(xq, b * 64 + n * 32 + p * 8 + 16 + g))
                g_lo = n * 8 + p * 2 + i
                g_hi = g_lo + 4
                sc_lo = sext_byte(word(sc, tb, 4, g_lo // 4), g_lo % 4)
                sc_hi = sext_byte(word(sc, tb, 4, g_hi // 4), g_hi % 4)
                isum = isum + (acc_lo - np.int32(32 * xsum[b * 16 + g_lo])) * sc_lo
                isum = isum + (acc_hi - np.int32(32 * xsum[b * 16 + g_hi])) * sc_hi
    return fma(to_f32(isum), half(dh, tb, 1, 0) * xd[b], facc)


@njit(inline="always")
def tile_dot_q2_k(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    """Quant words = 16 qs words (4 codes of 2 bits per byte); scale words = 16 scale|min bytes."""
    isum = zeros_i32x16()
    msum = zeros_i32x16()
    for n in range(2):
        for s in range(4):  # bit pair s of each byte
            for i in range(2):
                acc = zeros_i32x16()
                for gg in range(4):
                    g = 4 * i + gg
                    w = (word(qs, tb, 16, n * 8 + g) >> (2 * s)) & LOW2
                    acc = dot_u8s8(isa, acc, w, act(xq, b * 64 + n * 32 + s * 8 + g))
                grp = n * 8 + s * 2 + i
                packed = word(sc, tb, 4, grp // 4) >> (8 * (grp % 4))
                isum = isum + acc * (packed & 0xF)
                msum = msum + ((packed >> 4) & 0xF) * np.int32(xsum[b * 16 + grp])
    facc = fma(to_f32(isum), half(dh, tb, 2, 0) * xd[b], facc)
    return fma(to_f32(msum), half(dh, tb, 2, 1) * (-xd[b]), facc)


@njit(inline="always")
def q3_k_scale(s0, s1, s2, j):
    """Signed 6-bit scale j (0..15) per lane of Q3_K's 12 packed bytes (words s0..s2), - 32."""
    if j < 4:
        lo = s0 >> (8 * j)
    elif j < 8:
        lo = s1 >> (8 * (j - 4))
    elif j < 12:
        lo = s0 >> (8 * (j - 8) + 4)
    else:
        lo = s1 >> (8 * (j - 12) + 4)
    hi = (s2 >> (8 * (j % 4) + 2 * (j // 4))) & 3
    return ((lo & 0xF) | (hi << 4)) - 32


@njit(inline="always")
def tile_dot_q3_k(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    """Quant words = 8 hmask words then 16 qs words; scale words = 12 packed bytes."""
    s0, s1, s2 = word(sc, tb, 3, 0), word(sc, tb, 3, 1), word(sc, tb, 3, 2)
    isum = zeros_i32x16()
    for n in range(2):
        for s in range(4):
            for i in range(2):
                acc = zeros_i32x16()
                for gg in range(4):
                    g = 4 * i + gg
                    low = (word(qs, tb, 24, 8 + n * 8 + g) >> (2 * s)) & LOW2
                    high = (word(qs, tb, 24, g) >> (4 * n + s)) & BIT0
                    acc = dot_u8s8(
                        isa, acc, low | (high << 2), act(xq, b * 64 + n * 32 + s * 8 + g)
                    )
                grp = n * 8 + s * 2 + i
                isum = isum + (acc - np.int32(4 * xsum[b * 16 + grp])) * q3_k_scale(s0, s1, s2, grp)
    return fma(to_f32(isum), half(dh, tb, 1, 0) * xd[b], facc)


@njit(inline="always")
def tile_dot_q4_k(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    return tile_dot_q45_k(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc, False)


@njit(inline="always")
def tile_dot_q5_k(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    return tile_dot_q45_k(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc, True)


# ------------------------------------------------------------------ dispatch

TILE_DOTS = {
    T.Q4_0: tile_dot_q4_0,
    T.Q4_1: tile_dot_q4_1,
    T.Q5_0: tile_dot_q5_0,
    T.Q5_1: tile_dot_q5_1,
    T.Q8_0: tile_dot_q8_0,
    T.Q2_K: tile_dot_q2_k,
    T.Q3_K: tile_dot_q3_k,
    T.Q4_K: tile_dot_q4_k,
    T.Q5_K: tile_dot_q5_k,
    T.Q6_K: tile_dot_q6_k,
}


def tile_dot(qtype, isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    """tile_dot_<qtype>(...) for a static qtype token: only that type's code is compiled."""
    raise NotImplementedError("tile_dot is only callable from Numba code")


@overload(tile_dot, inline="always")
def _tile_dot(qtype, isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
    if not isinstance(qtype, StaticType) or qtype.value not in TILE_DOTS:
        return None
    fn = TILE_DOTS[qtype.value]

    def impl(qtype, isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc):
        return fn(isa, qs, sc, dh, tb, b, xq, xd, xs, xsum, facc)

    return impl
