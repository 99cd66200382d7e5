"""Per-type dot of one tile block with one token's quantized activations.

`tile_dot_<type>(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc)` returns facc + the
block's contribution to rows lane0 .. lane0 + N - 1 of the tile (F32xN, N = lanes(isa)).
    qs, sc, dh   the weight tiles (repack.Tiles, flat): int32 quant words, int32 scale words,
                 uint16 fp16 halves; tb = tile * n_blocks + b indexes one tile block
    b            block index along the row (for the activations)
    xq           int32 (n_in/4,): the token's int8 activation codes, 4 per word
    xd           float32 activation scale per activation block (32 or 256 weights)
    xs, xsum     32-blocks: fp16(d*sum) float32 and the integer sums per block;
                 256-blocks: xsum holds the 16-weight bsums (xs unused)
Codes are unpacked to unsigned bytes (offsets such as Q4_0's -8 are applied through the
activation sums), multiplied with the activations into partial sums (simd.pdot), flushed into
int32 with the sub-block scales, then scaled in float.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import overload

from . import type_ids as T
from .simd import (
    dot_s8s8,
    fma,
    load_f16,
    load_i32,
    pdot,
    pflush,
    pflush_scaled,
    pzero,
    sext_byte,
    splat_f32,
    splat_i32,
    to_f32,
    zeros_i32,
)
from .static import StaticType

LOW4 = np.int32(0x0F0F0F0F)
BIT0 = np.int32(0x01010101)
LOW2 = np.int32(0x03030303)


@njit(inline="always")
def word(isa, arr, tb, n_words, i, lane0):
    """Word i of tile block tb (n_words words per tile block), rows lane0.. (I32xN)."""
    return load_i32(isa, arr, (tb * n_words + i) * 16 + lane0)


@njit(inline="always")
def half(isa, dh, tb, n_halves, i, lane0):
    """fp16 value i of tile block tb (n_halves per tile block), rows lane0.. (F32xN)."""
    return load_f16(isa, dh, (tb * n_halves + i) * 16 + lane0)


@njit(inline="always")
def act(isa, xq, i):
    """Activation word i (4 int8 codes) broadcast to every lane."""
    return splat_i32(isa, xq[i])


@njit(inline="always")
def move_bits(v, src, dst, mask):
    """Bits at position src of every byte moved to position dst, keeping `mask` (at dst)."""
    if dst >= src:
        return (v << (dst - src)) & mask
    return (v >> (src - dst)) & mask


# ------------------------------------------------------------------ 32-weight blocks


@njit(inline="always")
def tile_dot_q8_0(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    acc = zeros_i32(isa)
    for g in range(8):
        acc = dot_s8s8(isa, acc, word(isa, qs, tb, 8, g, lane0), act(isa, xq, b * 8 + g))
    return fma(to_f32(acc), half(isa, dh, tb, 1, 0, lane0) * xd[b], facc)


@njit(inline="always")
def nibble_isum(isa, qs, tb, n_words, lane0, xq, b, has_high_bit):
    """Integer dot of a Q4_x/Q5_x block's unsigned codes (0..15 or 0..31) with the activations."""
    acc = zeros_i32(isa)
    p = pzero(isa)
    high = word(isa, qs, tb, n_words, 4, lane0) if has_high_bit else zeros_i32(isa)
    for v in range(4):
        w = word(isa, qs, tb, n_words, v, lane0)
        lo = w & LOW4
        hi = (w >> 4) & LOW4
        if has_high_bit:
            lo = lo | move_bits(high, 2 * v, 4, BIT0 << 4)
            hi = hi | move_bits(high, 2 * v + 1, 4, BIT0 << 4)
        p = pdot(isa, p, lo, act(isa, xq, b * 8 + v))
        p = pdot(isa, p, hi, act(isa, xq, b * 8 + 4 + v))
        if has_high_bit and v == 1:  # 4 products of 5-bit codes fill the int16 partials
            acc = pflush(isa, acc, p)
            p = pzero(isa)
    return pflush(isa, acc, p)


@njit(inline="always")
def tile_dot_q4_0(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    acc = nibble_isum(isa, qs, tb, 4, lane0, xq, b, False) - np.int32(8 * xsum[b])
    return fma(to_f32(acc), half(isa, dh, tb, 1, 0, lane0) * xd[b], facc)


@njit(inline="always")
def tile_dot_q5_0(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    acc = nibble_isum(isa, qs, tb, 5, lane0, xq, b, True) - np.int32(16 * xsum[b])
    return fma(to_f32(acc), half(isa, dh, tb, 1, 0, lane0) * xd[b], facc)


@njit(inline="always")
def tile_dot_q4_1(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    acc = nibble_isum(isa, qs, tb, 4, lane0, xq, b, False)
    facc = fma(half(isa, dh, tb, 2, 1, lane0), splat_f32(isa, xs[b]), facc)
    return fma(to_f32(acc), half(isa, dh, tb, 2, 0, lane0) * xd[b], facc)


@njit(inline="always")
def tile_dot_q5_1(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    acc = nibble_isum(isa, qs, tb, 5, lane0, xq, b, True)
    facc = fma(half(isa, dh, tb, 2, 1, lane0), splat_f32(isa, xs[b]), facc)
    return fma(to_f32(acc), half(isa, dh, tb, 2, 0, lane0) * xd[b], facc)


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
def tile_dot_q45_k(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc, has_high_bit):
    """Q4_K (has_high_bit False) and Q5_K: quant words = [8 qh words (Q5_K)] + 32 qs words."""
    n_words = 40 if has_high_bit else 32
    qs_at = 8 if has_high_bit else 0
    isum = zeros_i32(isa)
    msum = zeros_i32(isa)
    for c in range(4):  # qs bytes 32c..: sub-block 2c low, 2c + 1 high nibbles
        s0, s1, s2 = (
            word(isa, sc, tb, 3, 0, lane0),
            word(isa, sc, tb, 3, 1, lane0),
            word(isa, sc, tb, 3, 2, lane0),
        )
        sc_lo, m_lo = k4_scale_min(s0, s1, s2, 2 * c)
        sc_hi, m_hi = k4_scale_min(s0, s1, s2, 2 * c + 1)
        p_lo = pzero(isa)
        p_hi = pzero(isa)
        for g in range(8):
            w = word(isa, qs, tb, n_words, qs_at + c * 8 + g, lane0)
            lo = w & LOW4
            hi = (w >> 4) & LOW4
            if has_high_bit:
                high = word(isa, qs, tb, n_words, g, lane0)
                lo = lo | move_bits(high, 2 * c, 4, BIT0 << 4)
                hi = hi | move_bits(high, 2 * c + 1, 4, BIT0 << 4)
            p_lo = pdot(isa, p_lo, lo, act(isa, xq, b * 64 + c * 16 + g))
            p_hi = pdot(isa, p_hi, hi, act(isa, xq, b * 64 + c * 16 + 8 + g))
            if has_high_bit and g % 4 == 3:  # 4 products of 5-bit codes fill the partials
                isum = pflush_scaled(isa, isum, p_lo, sc_lo)
                isum = pflush_scaled(isa, isum, p_hi, sc_hi)
                p_lo = pzero(isa)
                p_hi = pzero(isa)
        if not has_high_bit:
            isum = pflush_scaled(isa, isum, p_lo, sc_lo)
            isum = pflush_scaled(isa, isum, p_hi, sc_hi)
        bs = b * 16 + c * 4  # bsums of the 4 groups of 16 in these 64 weights
        msum = msum + m_lo * np.int32(xsum[bs] + xsum[bs + 1])
        msum = msum + m_hi * np.int32(xsum[bs + 2] + xsum[bs + 3])
    facc = fma(to_f32(isum), half(isa, dh, tb, 2, 0, lane0) * xd[b], facc)
    return fma(to_f32(msum), half(isa, dh, tb, 2, 1, lane0) * (-xd[b]), facc)


@njit(inline="always")
def tile_dot_q4_k(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    return tile_dot_q45_k(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc, False)


@njit(inline="always")
def tile_dot_q5_k(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    return tile_dot_q45_k(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc, True)


@njit(inline="always")
def tile_dot_q6_k(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    """Quant words = 32 ql words then 16 qh words; scale words = 16 int8 scales."""
    isum = zeros_i32(isa)
    corr = zeros_i32(isa)  # sum of scale * bsum: the codes are stored + 32
    for k in range(8):  # k = 4n + 2p + i: ql bytes 64n + 32p, group i
        n, p, i = k // 4, (k // 2) % 2, k % 2
        g_lo = n * 8 + p * 2 + i  # the 16-weight groups fed by low and high nibbles
        g_hi = g_lo + 4
        sc_lo = sext_byte(word(isa, sc, tb, 4, g_lo // 4, lane0), g_lo % 4)
        sc_hi = sext_byte(word(isa, sc, tb, 4, g_hi // 4, lane0), g_hi % 4)
        p_lo = pzero(isa)
        p_hi = pzero(isa)
        for gg in range(4):
            g = 4 * i + gg
            ql = word(isa, qs, tb, 48, n * 16 + p * 8 + g, lane0)
            qh = word(isa, qs, tb, 48, 32 + n * 8 + g, lane0)
            lo = (ql & LOW4) | move_bits(qh, 2 * p, 4, LOW2 << 4)
            hi = ((ql >> 4) & LOW4) | move_bits(qh, 2 * p + 4, 4, LOW2 << 4)
            p_lo = pdot(isa, p_lo, lo, act(isa, xq, b * 64 + n * 32 + p * 8 + g))
            p_hi = pdot(isa, p_hi, hi, act(isa, xq, b * 64 + n * 32 + p * 8 + 16 + g))
            if gg % 2 == 1:  # 2 products of 6-bit codes fill the int16 partials
                isum = pflush_scaled(isa, isum, p_lo, sc_lo)
                isum = pflush_scaled(isa, isum, p_hi, sc_hi)
                p_lo = pzero(isa)
                p_hi = pzero(isa)
        corr = corr + sc_lo * np.int32(xsum[b * 16 + g_lo])
        corr = corr + sc_hi * np.int32(xsum[b * 16 + g_hi])
    isum = isum - (corr << 5)
    return fma(to_f32(isum), half(isa, dh, tb, 1, 0, lane0) * xd[b], facc)


@njit(inline="always")
def tile_dot_q2_k(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    """Quant words = 16 qs words (4 codes of 2 bits per byte); scale words = 16 scale|min bytes."""
    isum = zeros_i32(isa)
    msum = zeros_i32(isa)
    for grp in range(16):  # grp = 8n + 2s + i: bit pair s, qs bytes 32n + 16i
        n, s, i = grp // 8, (grp // 2) % 4, grp % 2
        p = pzero(isa)
        for gg in range(4):
            g = 4 * i + gg
            w = (word(isa, qs, tb, 16, n * 8 + g, lane0) >> (2 * s)) & LOW2
            p = pdot(isa, p, w, act(isa, xq, b * 64 + n * 32 + s * 8 + g))
        packed = word(isa, sc, tb, 4, grp // 4, lane0) >> (8 * (grp % 4))
        isum = pflush_scaled(isa, isum, p, packed & 0xF)
        msum = msum + ((packed >> 4) & 0xF) * np.int32(xsum[b * 16 + grp])
    facc = fma(to_f32(isum), half(isa, dh, tb, 2, 0, lane0) * xd[b], facc)
    return fma(to_f32(msum), half(isa, dh, tb, 2, 1, lane0) * (-xd[b]), facc)


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
def tile_dot_q3_k(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    """Quant words = 8 hmask words then 16 qs words; scale words = 12 packed bytes."""
    isum = zeros_i32(isa)
    corr = zeros_i32(isa)  # sum of scale * bsum: the codes are stored + 4
    for grp in range(16):  # grp = 8n + 2s + i, as Q2_K
        n, s, i = grp // 8, (grp // 2) % 4, grp % 2
        p = pzero(isa)
        for gg in range(4):
            g = 4 * i + gg
            low = (word(isa, qs, tb, 24, 8 + n * 8 + g, lane0) >> (2 * s)) & LOW2
            high = move_bits(word(isa, qs, tb, 24, g, lane0), 4 * n + s, 2, BIT0 << 2)
            p = pdot(isa, p, low | high, act(isa, xq, b * 64 + n * 32 + s * 8 + g))
        s0, s1, s2 = (
            word(isa, sc, tb, 3, 0, lane0),
            word(isa, sc, tb, 3, 1, lane0),
            word(isa, sc, tb, 3, 2, lane0),
        )
        scale = q3_k_scale(s0, s1, s2, grp)
        isum = pflush_scaled(isa, isum, p, scale)
        corr = corr + scale * np.int32(xsum[b * 16 + grp])
    isum = isum - (corr << 2)
    return fma(to_f32(isum), half(isa, dh, tb, 1, 0, lane0) * xd[b], facc)


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


def tile_dot(qtype, isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    """tile_dot_<qtype>(...) for a static qtype token: only that type's code is compiled."""
    raise NotImplementedError("tile_dot is only callable from Numba code")


@overload(tile_dot, inline="always")
def _tile_dot(qtype, isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    if not isinstance(qtype, StaticType) or qtype.value not in TILE_DOTS:
        return None
    fn = TILE_DOTS[qtype.value]

    def impl(qtype, isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
        return fn(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc)

    return impl
