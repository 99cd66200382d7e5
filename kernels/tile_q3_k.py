"""Q3_K's one-token dot on AVX-512 VNNI: its scales unpacked for all 16 groups at once.

Q3_K packs 16 six-bit scales into 12 bytes (low nibbles in two words, high bit pairs in a
third), stored + 32. The plain shape (tile_dots.kquant_shape) unpacks each group's scale
on its own, with shifts whose counts depend on the group (2 uops each on a register count),
and multiplies with vpmulld (2 uops) twice per group, scale and minimum: about half its
vector uops. Here the super-block's scales come out as four words of 4 bytes each, scale
4k + j in byte j of word k, at about 4 uops a word; a group's sum (at most
16 * 7 * 127, within int16) takes its scale (0..63) from the word's byte with one
vpdpwssd, and the 32 all scales are stored above is taken off once per super-block as 32
times the sum of the group sums. The minimums (4 * (scale - 32) per group, the codes
being stored + 4) are 4 * sum(scale * bsum) - 128 * sum(bsum): the scales' int16 halves
(bytes 0 and 2, 1 and 3) times the activation sums packed in pairs, one vpdpwssd per two
groups. The integers are the plain shape's and so are the float steps: same bits.
"""

from __future__ import annotations

import numpy as np

from .inline import inline, runtime, unrolled
from .simd import fma, load_splat_i32, prefetch, splat_i32, to_f32, zeros_i32
from .simd_dot import dot_i16, dot_u8s8
from .tile_codes import BIT0, LOW2, LOW3, LOW4, word
from .tile_q2_k import bsum_pair

HIGH_PAIR = np.int32(0x30303030)  # bits 4-5 of every byte: a scale's high bit pair
BYTE_PAIR = np.int32(0x00FF00FF)  # bytes 0 and 2: two int16 values


@inline
def scale_word(isa, sc, tb, lane0, k):
    """Unsigned scales (0..63) of groups 4k .. 4k + 3, one per byte (I32xN), k a constant:
    low nibbles from word k % 2 (its high nibbles for k >= 2), bit pair k of word 2."""
    low = (word(isa, sc, tb, 3, k % 2, lane0) >> (4 * (k // 2))) & LOW4
    s2 = word(isa, sc, tb, 3, 2, lane0)
    if k < 2:
        high = s2 << (4 - 2 * k)
    else:
        high = s2 >> (2 * k - 4)
    return low | (high & HIGH_PAIR)


@inline
def code_sum(isa, c0, c1, c2, c3, xq, a):
    """The dot of four code words with activation words a .. a + 3 (I32xN)."""
    p = dot_u8s8(isa, zeros_i32(isa), c0, load_splat_i32(isa, xq, a))
    p = dot_u8s8(isa, p, c1, load_splat_i32(isa, xq, a + 1))
    p = dot_u8s8(isa, p, c2, load_splat_i32(isa, xq, a + 2))
    return dot_u8s8(isa, p, c3, load_splat_i32(isa, xq, a + 3))


def q3_k_vnni_shape(block_scales, quant_words, prefetch_words, prefetch_sides):
    """The dot of a Q3_K super-block (tile_dots' dot signature) on AVX-512 VNNI."""

    @inline
    def triple(t, carry, args):  # groups 2t, 2t + 1: quant words 3t .. 3t + 2
        isa, qs, tb, lane0, b, xq, u = args
        times, psum = carry
        for i in range(3):  # this triple's share of the block's lines, prefetch_words ahead
            prefetch(qs, (tb * quant_words + 3 * t + i) * 16 + prefetch_words)
        w0 = word(isa, qs, tb, 24, 3 * t, lane0)
        w1 = word(isa, qs, tb, 24, 3 * t + 1, lane0)
        w2 = word(isa, qs, tb, 24, 3 * t + 2, lane0)
        a = b * 64 + 8 * t  # code words 8t .. 8t + 7 (tile_codes.codes_q3_k)
        p0 = code_sum(isa, w0 & LOW3, (w0 >> 3) & LOW3, w1 & LOW3, (w1 >> 3) & LOW3, xq, a)
        c6 = ((w0 >> 6) & LOW2) | ((w2 >> 4) & (BIT0 << 2))
        c7 = ((w1 >> 6) & LOW2) | ((w2 >> 5) & (BIT0 << 2))
        p1 = code_sum(isa, w2 & LOW3, (w2 >> 3) & LOW3, c6, c7, xq, a + 4)
        scales = u[t // 2] >> (16 * (t % 2))  # groups 2t, 2t + 1: bytes 2 (t % 2) ..
        times = dot_i16(isa, times, p0, scales & 0xFF)
        times = dot_i16(isa, times, p1, (scales >> 8) & 0xFF)
        return times, psum + p0 + p1

    triples = unrolled(triple, 8)  # t a constant in each: every shift an immediate

    @inline
    def dot(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
        prefetch_sides(sc, dh, tb, quant_words, 3, 1)  # 3 scale words, d
        u = (scale_word(isa, sc, tb, lane0, runtime(0)), scale_word(isa, sc, tb, lane0, runtime(1)),
             scale_word(isa, sc, tb, lane0, runtime(2)), scale_word(isa, sc, tb, lane0, runtime(3)))  # fmt: skip
        z = zeros_i32(isa)
        times, psum = triples(runtime(0), (z, z), (isa, qs, tb, lane0, b, xq, u))
        isum = times - (psum << 5)  # sum of (scale - 32) * group sum
        g = b * 16
        m = zeros_i32(isa)
        total = 0
        for k in range(4):  # groups 4k, 4k + 2 and 4k + 1, 4k + 3: int16 pairs
            m = dot_i16(isa, m, u[k] & BYTE_PAIR,
                        splat_i32(isa, bsum_pair(xsum, g + 4 * k, g + 4 * k + 2)))  # fmt: skip
            m = dot_i16(isa, m, (u[k] >> 8) & BYTE_PAIR,
                        splat_i32(isa, bsum_pair(xsum, g + 4 * k + 1, g + 4 * k + 3)))  # fmt: skip
        for j in range(16):
            total += xsum[g + j]
        msum = (m << 2) - np.int32(128 * total)
        d, dm = block_scales(isa, dh, tb, lane0)
        facc = fma(to_f32(isum), d * xd[b], facc)
        return fma(to_f32(msum), dm * (-xd[b]), facc)

    return dot
