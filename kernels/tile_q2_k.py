"""Q2_K's one-token dot on AVX-512 VNNI: each quant word read once for its four code words.

A Q2_K quant word holds four code words, bit pair s = 0..3 of each byte, of four scale
groups: word 8n + 4h + i holds word i of groups 8n + 2s + h. The plain shape
(tile_dots.kquant_shape) takes one group at a time and shifts each word into place: on VNNI
it summed 17 GB/s of weights in L2, about a thread's share of the DRAM bandwidth, with
port 0 busy on shifts by a register count (2 uops each) and vpmulld (2 uops).

Here a group's codes stay where they are, masked: code * 4^s, at most 192, still an unsigned
byte for vpdpbusd. The factor comes out exactly: bit pairs 2 and 3 are shifted right by 4
after their group's sum (a multiple of 16), and the groups then add into two sums, one of
codes times 1 (pairs 0, 2) and one of codes times 4 (pairs 1, 3), shifted right by 2 at the
end (a multiple of 4). Every group sum then fits int16 (16 * 3 * 4 * 127 < 32768), so its
scale is one vpdpwssd, and the mins two groups at a time, from the int16 halves of their
scale word. The integer sums are the plain shape's, and so are the float steps: same bits.
"""

from __future__ import annotations

import numpy as np

from .inline import inline, runtime, unrolled
from .simd import ashr, fma, load_splat_i32, prefetch, splat_i32, to_f32, zeros_i32
from .simd_dot import dot_i16, dot_u8s8
from .tile_codes import word

# the bit pair s of every byte, in place
PAIR0, PAIR1, PAIR2 = np.int32(0x03030303), np.int32(0x0C0C0C0C), np.int32(0x30303030)
PAIR3 = np.int32(np.uint32(0xC0C0C0C0).view(np.int32))
NIBBLE_PAIR = np.int32(0x000F000F)  # the low nibbles of bytes 0 and 2: two int16 values
LOW16 = np.int32(0xFFFF)


@inline
def group_sum(isa, w0, w1, w2, w3, mask, xq, a):
    """The sum of one group's 4 code words (masked in place) with activation words a .. a+3."""
    p = dot_u8s8(isa, zeros_i32(isa), w0 & mask, load_splat_i32(isa, xq, a))
    p = dot_u8s8(isa, p, w1 & mask, load_splat_i32(isa, xq, a + 1))
    p = dot_u8s8(isa, p, w2 & mask, load_splat_i32(isa, xq, a + 2))
    return dot_u8s8(isa, p, w3 & mask, load_splat_i32(isa, xq, a + 3))


@inline
def bsum_pair(xsum, first, second):
    """Two activation group sums as int16 halves of one word (each fits: |sum| <= 16 * 127)."""
    return np.int32((xsum[first] & 0xFFFF) | (xsum[second] << 16))


def q2_k_vnni_shape(block_scales, quant_words, prefetch_words, prefetch_sides):
    """The dot of a Q2_K super-block (tile_dots' dot signature) on AVX-512 VNNI."""

    @inline
    def quad(k, carry, args):  # quant words 8n + 4h .. + 3 with k = 2n + h
        isa, qs, sc, tb, lane0, b, xq, xsum = args
        times1, times4, msum = carry
        n, h = k // 2, k % 2
        for i in range(4):  # this quad's share of the block's lines, prefetch_words ahead
            prefetch(qs, (tb * quant_words + 4 * k + i) * 16 + prefetch_words)
        first = 8 * n + 4 * h
        w0, w1 = word(isa, qs, tb, 16, first, lane0), word(isa, qs, tb, 16, first + 1, lane0)
        w2, w3 = word(isa, qs, tb, 16, first + 2, lane0), word(isa, qs, tb, 16, first + 3, lane0)
        # scale words: groups 8n .. 8n + 3 (pairs 0, 1) and 8n + 4 .. (pairs 2, 3), a byte
        # each (scale | min << 4); group 8n + 2s + h is byte 2 (s % 2) + h
        low, high = word(isa, sc, tb, 4, 2 * n, lane0), word(isa, sc, tb, 4, 2 * n + 1, lane0)
        a = b * 64 + 32 * n + 4 * h  # activation word of group 8n + h's first code word
        p0 = group_sum(isa, w0, w1, w2, w3, PAIR0, xq, a)
        p1 = group_sum(isa, w0, w1, w2, w3, PAIR1, xq, a + 8)
        p2 = ashr(group_sum(isa, w0, w1, w2, w3, PAIR2, xq, a + 16), 4)
        p3 = ashr(group_sum(isa, w0, w1, w2, w3, PAIR3, xq, a + 24), 4)
        times1 = dot_i16(isa, times1, p0, (low >> (8 * h)) & 0xF)
        times4 = dot_i16(isa, times4, p1, (low >> (8 * h + 16)) & 0xF)
        times1 = dot_i16(isa, times1, p2, (high >> (8 * h)) & 0xF)
        times4 = dot_i16(isa, times4, p3, (high >> (8 * h + 16)) & 0xF)
        g = b * 16 + 8 * n + h  # xsum index of group 8n + h (pair s: + 2s)
        msum = dot_i16(isa, msum, (low >> (8 * h + 4)) & NIBBLE_PAIR,
                       splat_i32(isa, bsum_pair(xsum, g, g + 2)))  # fmt: skip
        msum = dot_i16(isa, msum, (high >> (8 * h + 4)) & NIBBLE_PAIR,
                       splat_i32(isa, bsum_pair(xsum, g + 4, g + 6)))  # fmt: skip
        return times1, times4, msum

    quads = unrolled(quad, 4)  # k a constant in each: every shift an immediate

    @inline
    def dot(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
        prefetch_sides(sc, dh, tb, quant_words, 4, 2)  # 4 scale words, d and dmin
        z = zeros_i32(isa)
        times1, times4, msum = quads(runtime(0), (z, z, z), (isa, qs, sc, tb, lane0, b, xq, xsum))
        isum = times1 + ashr(times4, 2)
        d, dm = block_scales(isa, dh, tb, lane0)
        facc = fma(to_f32(isum), d * xd[b], facc)
        return fma(to_f32(msum), dm * (-xd[b]), facc)

    return dot
