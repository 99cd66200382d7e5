"""Four tokens per pass over an unpacked tile block: the prefill shapes on AVX-512 VNNI.

    dot(isa, codes_buf, groups_buf, floats_buf, xq, xd, xs, xsum, acc, tok)
adds the unpacked tile block (tile_dots' buffers, 16 rows) to the accumulators
acc[tok .. tok + 3] (batch_task's per-token rows of 32 floats), for tokens tok .. tok + 3
of the activations of the block's position along the row, token by token (tiled.block_major):
xq (n_tok, words) int32, xd (n_tok,), xs (n_tok, 0 or 1), xsum (n_tok, 1 or 16).

The one-token unpacked shapes (tile_dots) load every code vector again for each token,
and a group's words form one chain of vpdpbusd, 5 cycles each: Q4_0's 512-token matmul ran
at the chain's pace, about 0.4 vpdpbusd per cycle where the core issues 2. Here each code
vector is loaded once for four tokens (LLVM merges the loads: nothing is stored until the
block's end), and each token's words alternate between two chains. The integer sums are
exact whatever their order, and each token's float steps are the one-token shape's, in the
same order, so every token gets the same bits as there.

AVX-512 VNNI only (simd.many_registers): four tokens' sums fill most of its 32 registers,
and its partial sums are int32, which never need an early flush.
"""

from __future__ import annotations

import numpy as np

from .inline import inline
from .simd import (
    fma,
    load_f32,
    load_i32,
    load_splat_i32,
    pzero,
    splat_f32,
    splat_i32,
    store_f32,
    to_f32,
    zeros_i32,
)
from .simd_dot import dot_i16, pdot, pflush
from .tile_codes import int16_words

QUAD = 4  # tokens per pass
LOW16 = np.int32(0xFFFF)


@inline
def chains(isa, codes_buf, first, n_words, xq, a0):
    """The dot of code words first .. first + n_words - 1 with activation words a0 ..
    of one token, in two chains (even and odd words): their two sums, I32xN each."""
    pa, pb = pzero(isa), pzero(isa)
    for i in range(0, n_words, 2):
        pa = pdot(
            isa, pa, load_i32(isa, codes_buf, (first + i) * 16), load_splat_i32(isa, xq, a0 + i)
        )
        pb = pdot(isa, pb, load_i32(isa, codes_buf, (first + i + 1) * 16),
                  load_splat_i32(isa, xq, a0 + i + 1))  # fmt: skip
    return pflush(isa, zeros_i32(isa), pa), pflush(isa, zeros_i32(isa), pb)


def legacy_quad_shape(offset, has_m):
    """tile_dots.legacy_shape's arithmetic for four tokens (one float sum per row)."""

    @inline
    def token_sum(isa, codes_buf, xq, xsum):
        sa, sb = chains(isa, codes_buf, 0, 8, xq, 0)
        s = sa + sb
        if offset:
            s = s - np.int32(offset * xsum[0])
        return s

    @inline
    def to_float(isa, d, m, s, xd, xs, row):
        f = load_f32(isa, row, 0)
        if has_m:
            f = fma(m, splat_f32(isa, xs[0]), f)
        store_f32(row, 0, fma(to_f32(s), d * xd, f))

    @inline
    def dot(isa, codes_buf, groups_buf, floats_buf, xq, xd, xs, xsum, acc, tok):
        # every token's integer sum before the first store: the code loads then merge
        s0 = token_sum(isa, codes_buf, xq[tok], xsum[tok])
        s1 = token_sum(isa, codes_buf, xq[tok + 1], xsum[tok + 1])
        s2 = token_sum(isa, codes_buf, xq[tok + 2], xsum[tok + 2])
        s3 = token_sum(isa, codes_buf, xq[tok + 3], xsum[tok + 3])
        d, m = load_f32(isa, floats_buf, 0), load_f32(isa, floats_buf, 16)
        to_float(isa, d, m, s0, xd[tok], xs[tok], acc[tok])
        to_float(isa, d, m, s1, xd[tok + 1], xs[tok + 1], acc[tok + 1])
        to_float(isa, d, m, s2, xd[tok + 2], xs[tok + 2], acc[tok + 2])
        to_float(isa, d, m, s3, xd[tok + 3], xs[tok + 3], acc[tok + 3])

    return dot


def kquant_quad_shape(group_words, code_bits, split_min=False, per_pair=False,
                      tiled_order=False):  # fmt: skip
    """tile_dots.kquant_shape's arithmetic (unpacked, the same options) for four tokens.

    The integer work is cut where it can be without changing a sum: a group's scaled flush
    is one vpdpwssd (dot_i16 with the scale in the low half) wherever its partial sums fit
    int16 (codes below 2**code_bits times activations within +-128), instead of vpmulld
    (2 uops) and an add; the minimum's sum takes one vpdpwssd per two 16-weight sums, the
    activation sums packed in pairs by tiled.block_major."""
    n_groups = 64 // group_words
    fit = int16_words(code_bits)
    flush16 = 2 if fit >= group_words else 1 if fit >= group_words // 2 else 0
    span = 2 if group_words == 4 else 1  # groups per int16 pair of activation sums

    @inline
    def group_sum(isa, codes_buf, scale, scale16, g, xq, isum):
        sa, sb = chains(isa, codes_buf, group_words * g, group_words, xq, group_words * g)
        if flush16 == 2:  # the group's whole sum fits int16
            return dot_i16(isa, isum, sa + sb, scale16)
        if flush16 == 1:  # each chain's does
            return dot_i16(isa, dot_i16(isa, isum, sa, scale16), sb, scale16)
        return isum + (sa + sb) * scale

    @inline
    def step(isa, codes_buf, groups_buf, j, xq, xpair, isum, msum):
        """Groups j * span ..: their scaled sums into isum, their minimums' into msum."""
        g = j * span
        scale = load_i32(isa, groups_buf, g * 16)
        isum = group_sum(isa, codes_buf, scale, scale & LOW16, g, xq, isum)
        mn = load_i32(isa, groups_buf, 256 + g * 16)
        if span == 2:
            scale = load_i32(isa, groups_buf, (g + 1) * 16)
            isum = group_sum(isa, codes_buf, scale, scale & LOW16, g + 1, xq, isum)
            pair = (mn & LOW16) | (load_i32(isa, groups_buf, 256 + (g + 1) * 16) << 16)
        else:  # a 32-weight group: both sums of the pair are its own
            pair = (mn & LOW16) | (mn << 16)
        return isum, dot_i16(isa, msum, pair, splat_i32(isa, xpair[j]))

    @inline
    def to_float(isa, d, dm, xd, isum, msum, row):
        """The one-token shape's float steps on a token's integer sums (row: its acc)."""
        if tiled_order:
            f = load_f32(isa, row, 0)
            store_f32(row, 0, fma(to_f32(isum - msum) * d, splat_f32(isa, xd), f))
        elif split_min:
            store_f32(row, 0, fma(to_f32(isum), d * xd, load_f32(isa, row, 0)))
            store_f32(row, 16, fma(to_f32(msum), dm * xd, load_f32(isa, row, 16)))
        else:
            f = fma(to_f32(isum), d * xd, load_f32(isa, row, 0))
            store_f32(row, 0, fma(to_f32(msum), dm * (-xd), f))

    @inline
    def dot(isa, codes_buf, groups_buf, floats_buf, xq, xd, xs, xsum, acc, tok):
        d, dm = load_f32(isa, floats_buf, 0), load_f32(isa, floats_buf, 16)
        xq0, xq1, xq2, xq3 = xq[tok], xq[tok + 1], xq[tok + 2], xq[tok + 3]
        xp0, xp1, xp2, xp3 = xsum[tok], xsum[tok + 1], xsum[tok + 2], xsum[tok + 3]
        z = zeros_i32(isa)
        i0, i1, i2, i3, m0, m1, m2, m3 = z, z, z, z, z, z, z, z
        for j in range(n_groups // span):
            i0, m0 = step(isa, codes_buf, groups_buf, j, xq0, xp0, i0, m0)
            i1, m1 = step(isa, codes_buf, groups_buf, j, xq1, xp1, i1, m1)
            i2, m2 = step(isa, codes_buf, groups_buf, j, xq2, xp2, i2, m2)
            i3, m3 = step(isa, codes_buf, groups_buf, j, xq3, xp3, i3, m3)
            if per_pair and j % 2 == 1:  # llama.cpp's gemm: to float every 64 weights
                to_float(isa, d, dm, xd[tok], i0, m0, acc[tok])
                to_float(isa, d, dm, xd[tok + 1], i1, m1, acc[tok + 1])
                to_float(isa, d, dm, xd[tok + 2], i2, m2, acc[tok + 2])
                to_float(isa, d, dm, xd[tok + 3], i3, m3, acc[tok + 3])
                i0, i1, i2, i3, m0, m1, m2, m3 = z, z, z, z, z, z, z, z
        if not per_pair:
            to_float(isa, d, dm, xd[tok], i0, m0, acc[tok])
            to_float(isa, d, dm, xd[tok + 1], i1, m1, acc[tok + 1])
            to_float(isa, d, dm, xd[tok + 2], i2, m2, acc[tok + 2])
            to_float(isa, d, dm, xd[tok + 3], i3, m3, acc[tok + 3])

    return dot
