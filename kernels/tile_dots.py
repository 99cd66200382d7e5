"""The dot of one tile block with one token's quantized activations: one shape per family
(tile_dispatch.py picks the shape and accumulator form per weight type).

    tile_dot(qtype, isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc) -> F32xN
adds the block's contribution to rows lane0 .. lane0 + N - 1 of the tile (N = lanes(isa)):
    qs, sc, dh   the weight tiles (repack.Tiles, flat): int32 quant words, int32 scale words,
                 uint16 fp16 halves; tb = tile * n_blocks + b indexes one tile block
    b            block index along the row (for the activations)
    xq           int32 (n_in/4,): the token's int8 activation codes, 4 per word
    xd           float32 activation scale per activation block (32 or 256 weights)
    xs, xsum     32-blocks: fp16(d*sum) float32 and the integer sums per block;
                 256-blocks: xsum holds the 16-weight bsums (xs unused)
Codes (tile_codes.py) are multiplied with the activations into partial sums (simd.pdot),
flushed into int32 with the group scales, then scaled in float. While it computes, a block
prefetches the quant bytes PREFETCH_WORDS ahead: a matvec streams its weights from DRAM, and
the hardware prefetcher alone left the k-quant kernels at 50-60 % of the bandwidth.

For many tokens (prefill), tile_unpack writes a block's codes and scales once into small
buffers and tile_dot_unpacked runs the same shape on them for each token, so the bit
unpacking is paid once per block instead of once per token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import njit

from . import type_ids as T
from .inline import inline, runtime, unrolled
from .quantize_activations import FLOAT_BIAS
from .repack import LAYOUTS
from .simd import (
    VNNI_NAMES,
    bits_f32,
    fma,
    lanes,
    load_f32,
    load_i32,
    load_splat_i32,
    many_registers,
    prefetch,
    pzero,
    schedule_barrier,
    splat_f32,
    splat_i32,
    store_f32,
    store_i32,
    to_f32,
    zeros_i32,
)
from .simd_dot import dot_s8s8, dot_u8s8, pdot, pflush, pflush_scaled
from .tile_codes import KQUANT_PARTS, LEGACY_PARTS
from .tile_q2_k import q2_k_vnni_shape
from .tile_q3_k import q3_k_vnni_shape
from .tile_quads import kquant_quad_shape, legacy_quad_shape

F32_BIAS = np.float32(12582912.0)  # the float whose bits are FLOAT_BIAS

# sizes of the unpacked buffers, per tile block (16 rows): codes, int32 group scales and
# mins, float block scales
UNPACKED_CODES = 64 * 16
UNPACKED_GROUPS = 2 * 16 * 16
UNPACKED_FLOATS = 2 * 16

# how far ahead of the block being computed its quant words are prefetched: 4 KiB, about
# 300 ns of streaming at a core's share of the bandwidth, which covers DRAM latency with room
# to spare (measured on 11008x4096 matvecs: 1-2 KiB gained less for k-quants, 8 KiB no more;
# again so with prefetches into L2 only, simd.prefetch)
PREFETCH_WORDS = 1024
SCALE_WORDS = {int(t): layout.scale_words for t, layout in LAYOUTS.items()}
N_HALVES = {int(t): len(layout.halves) for t, layout in LAYOUTS.items()}
QUANT_WORDS = {int(t): layout.quant_words for t, layout in LAYOUTS.items()}  # per tile row


@inline
def prefetch_lines(qs, tb, n_words, first, end):
    """Prefetch quant words first .. end - 1 (one 64-byte line of 16 lanes each) of the tile
    block PREFETCH_WORDS ahead of tile block tb."""
    for i in range(first, end):
        prefetch(qs, (tb * n_words + i) * 16 + PREFETCH_WORDS)


@inline
def prefetch_sides(sc, dh, tb, quant_words, scale_words, n_halves):
    """Prefetch the scale words and fp16 halves of the tile block whose quants are
    PREFETCH_WORDS ahead of tile block tb's (k-quants: 11008x4096 Q2_K matvec from DRAM,
    interleaved runs, 85-87 -> 90-92 % of the bandwidth, Q4_K +0-2 %). One line of halves:
    the next tile block's may share it."""
    ahead = tb + PREFETCH_WORDS // (16 * quant_words)
    for i in range(scale_words):  # 16-word lines
        prefetch(sc, (ahead * scale_words + i) * 16)
    prefetch(dh, ahead * n_halves * 16)


@inline
def act(isa, xq, i):
    """Activation word i (4 int8 codes) broadcast to every lane."""
    return load_splat_i32(isa, xq, i)


def legacy_shape(codes, block_scales, offset, has_m, per_flush, quant_words=0):
    """The dot of a 32-weight block: d * (sum(code * x) - offset * sum(x)) (+ m * sum(x)).
    quant_words > 0: prefetch that many words of the block ahead."""

    @inline
    def dot(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
        prefetch_lines(qs, tb, quant_words, 0, quant_words)
        acc = zeros_i32(isa)
        p = pzero(isa)
        for v in range(4):  # both groups (nibble halves) of word v together: one load
            c0 = codes(isa, qs, tb, lane0, 0, v)
            c1 = codes(isa, qs, tb, lane0, 1, v)
            p = pdot(isa, p, c0, act(isa, xq, b * 8 + v))
            p = pdot(isa, p, c1, act(isa, xq, b * 8 + 4 + v))
            if (2 * v + 2) % per_flush == 0:  # before the int16 partials could overflow
                acc = pflush(isa, acc, p)
                p = pzero(isa)
        if offset:
            acc = acc - np.int32(offset * xsum[b])
        d, m = block_scales(isa, dh, tb, lane0)
        if has_m:
            facc = fma(m, splat_f32(isa, xs[b]), facc)
        return fma(to_f32(acc), d * xd[b], facc)

    return dot


def legacy_exact_shape(codes, block_scales, offset, has_m, signed, quant_words, flipped=False):
    """The dot of a 32-weight block in ggml's float order, for llama.cpp's tokens on files of
    these types (Q8_0, Q4_1, Q5_0, Q5_1): each of a row's 8 partial sums (ggml's 8 lanes,
    weights 4k .. 4k + 3 of every block) is scaled and accumulated on its own, and acc_total
    adds them up as hsum_float_8 does. With a block minimum, m * s accumulates in a ninth
    sum, added last (ggml's `summs`). One sum per row, as the other shapes keep, rounds
    differently in the last bit; 8-bit activations downstream turn that into logit
    differences of up to 1. offset: the codes are stored + offset (Q5_0's 16), subtracted per
    lane as offset times the sum of the lane's 4 activations (xs holds those word sums for
    such types, quantize_activations); on AVX-512 VNNI that term starts the lane's vpdpbusd
    sum instead of a subtract after it (11008x4096 Q5_0 matvec from DRAM, interleaved runs:
    81-82 -> 88-89 % of the bandwidth). flipped: signed codes read with their top bit
    flipped on AVX-512 VNNI (row_unpacker), unsigned for vpdpbusd: c . a = (c + 128) . a - 128
    * (the word's activation sum), the sum from xs, one vpdpbusd instead of dot_s8s8's two."""

    @inline
    def part(isa, qs, tb, lane0, k, xq, xs, b, dd, f):  # word k: ggml's lane k
        c = codes(isa, qs, tb, lane0, k // 4, k % 4)
        a = act(isa, xq, b * 8 + k)
        if (offset or (signed and flipped)) and many_registers(isa):
            # the sum starts at xs's word start (quantize_activations.words_quantizer): the
            # offset's term, and a bias that makes its bits the float 12582912 + sum, so a
            # subtract converts it (vcvtdq2ps and vpdpbusd both run on port 0 only)
            s = dot_u8s8(isa, splat_i32(isa, xs[b * 8 + k]), c, a)
            return fma(bits_f32(s) - F32_BIAS, dd, f)
        if signed:
            s = dot_s8s8(isa, zeros_i32(isa), c, a)
        else:  # unsigned codes times signed bytes, widened: the lane's 4 products
            s = pflush(isa, zeros_i32(isa), pdot(isa, pzero(isa), c, a))
            if offset:  # xs's word start less the bias: the offset's term
                s = s + (xs[b * 8 + k] - np.int32(FLOAT_BIAS))
        return fma(to_f32(s), dd, f)

    @inline
    def sums(isa, qs, tb, lane0, xq, xs, b, dd, f0, f1, f2, f3, f4, f5, f6, f7):
        return (
            part(isa, qs, tb, lane0, runtime(0), xq, xs, b, dd, f0),
            part(isa, qs, tb, lane0, runtime(1), xq, xs, b, dd, f1),
            part(isa, qs, tb, lane0, runtime(2), xq, xs, b, dd, f2),
            part(isa, qs, tb, lane0, runtime(3), xq, xs, b, dd, f3),
            part(isa, qs, tb, lane0, runtime(4), xq, xs, b, dd, f4),
            part(isa, qs, tb, lane0, runtime(5), xq, xs, b, dd, f5),
            part(isa, qs, tb, lane0, runtime(6), xq, xs, b, dd, f6),
            part(isa, qs, tb, lane0, runtime(7), xq, xs, b, dd, f7),
        )

    if has_m:

        @inline
        def dot(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
            prefetch_lines(qs, tb, quant_words, 0, quant_words)
            d, m = block_scales(isa, dh, tb, lane0)
            f0, f1, f2, f3, f4, f5, f6, f7, fm = facc
            f0, f1, f2, f3, f4, f5, f6, f7 = sums(isa, qs, tb, lane0, xq, xs, b, d * xd[b], f0,
                                                  f1, f2, f3, f4, f5, f6, f7)  # fmt: skip
            return f0, f1, f2, f3, f4, f5, f6, f7, SUMMS(m, splat_f32(isa, xs[b]), fm)

        return dot

    @inline
    def dot(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
        prefetch_lines(qs, tb, quant_words, 0, quant_words)
        d, _ = block_scales(isa, dh, tb, lane0)
        f0, f1, f2, f3, f4, f5, f6, f7 = facc
        return sums(isa, qs, tb, lane0, xq, xs, b, d * xd[b], f0, f1, f2, f3, f4, f5, f6, f7)

    return dot


def q6_k_exact_shape(codes, group, block_scales, quant_words):
    """The dot of a Q6_K super-block in ggml's float order (vec_dot_q6_K_q8_K on AVX2, for
    single tokens and batches alike): 8 lanes per row; lane l holds the scaled products of
    word l % 4 of the groups 8n + 2p + l // 4 (weights 128n + 32p + 4l .. + 3) less 32 times
    the scaled activation sums of groups 2l and 2l + 1, then fma(lane, d_w * d_x).

    The lanes are summed four at a time, group by group (the lanes of one parity take the
    four words of the same groups), so each group's words are loaded once and die at once.
    On AVX2 it runs 8 rows per vector (linear.NARROW_TYPES), the two halves of a tile block
    one after the other: with 16, the 8 float sums alone filled the 16 ymm registers, and
    the block's words spilled (450 stack moves per block). Matvec 11008x4096 went from 21.4
    to 27.3 GB/s, 67 -> 88 % of the bandwidth."""

    @inline
    def group_part(k, s, args):  # group 8n + 2p + h with k = 4n + p: its word i to lane 4h + i
        isa, qs, sc, tb, lane0, xq, b, h = args
        g = 8 * (k // 4) + 2 * (k % 4) + h
        # the block's 48 lines PREFETCH_WORDS ahead, 3 per step (8 rows per vector: a half
        # block's 24, in its even steps), written out after a barrier: without it all were
        # scheduled at the block's start, and in that burst matvec streamed 15 GB/s instead
        # of 27 (as loops, they split the block, and its words spilled between them)
        schedule_barrier()
        first = 3 * (2 * k + h) if lanes(isa) == 16 else 24 * (lane0 // 8) + 3 * k
        if lanes(isa) == 16 or h == 0:
            line = (tb * quant_words + first) * 16 + PREFETCH_WORDS
            prefetch(qs, line)
            prefetch(qs, line + 16)
            prefetch(qs, line + 32)
        scale, _ = group(isa, sc, tb, lane0, g)
        s0, s1, s2, s3 = s
        a = b * 64 + 4 * g
        s0 = pflush_scaled(isa, s0, pdot(isa, pzero(isa), codes(isa, qs, tb, lane0, g, 0),
                                         act(isa, xq, a)), scale)  # fmt: skip
        s1 = pflush_scaled(isa, s1, pdot(isa, pzero(isa), codes(isa, qs, tb, lane0, g, 1),
                                         act(isa, xq, a + 1)), scale)  # fmt: skip
        s2 = pflush_scaled(isa, s2, pdot(isa, pzero(isa), codes(isa, qs, tb, lane0, g, 2),
                                         act(isa, xq, a + 2)), scale)  # fmt: skip
        s3 = pflush_scaled(isa, s3, pdot(isa, pzero(isa), codes(isa, qs, tb, lane0, g, 3),
                                         act(isa, xq, a + 3)), scale)  # fmt: skip
        return s0, s1, s2, s3

    group_parts = unrolled(group_part, 8)  # as a loop, LLVM kept g's shifts at run time

    @inline
    def lane_total(isa, sc, tb, lane0, xsum, b, lane, s, dd, f):
        for g in (2 * lane, 2 * lane + 1):
            scale, _ = group(isa, sc, tb, lane0, g)
            s = s - scale * np.int32(32 * xsum[b * 16 + g])
        return fma(to_f32(s), dd, f)

    @inline
    def parity_half(isa, qs, sc, tb, lane0, xq, xsum, b, h, dd, facc):
        # lanes 4h .. 4h + 3: their integer sums, group by group, then one fma each
        z = zeros_i32(isa)
        s = group_parts(runtime(0), (z, z, z, z), (isa, qs, sc, tb, lane0, xq, b, h))
        fa, fb, fc, fd = facc
        return (lane_total(isa, sc, tb, lane0, xsum, b, 4 * h, s[0], dd, fa),
                lane_total(isa, sc, tb, lane0, xsum, b, 4 * h + 1, s[1], dd, fb),
                lane_total(isa, sc, tb, lane0, xsum, b, 4 * h + 2, s[2], dd, fc),
                lane_total(isa, sc, tb, lane0, xsum, b, 4 * h + 3, s[3], dd, fd))  # fmt: skip

    @inline
    def dot(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
        d, _ = block_scales(isa, dh, tb, lane0)
        dd = d * xd[b]
        f0, f1, f2, f3, f4, f5, f6, f7 = facc
        f0, f1, f2, f3 = parity_half(isa, qs, sc, tb, lane0, xq, xsum, b, runtime(0), dd,
                                     (f0, f1, f2, f3))  # fmt: skip
        f4, f5, f6, f7 = parity_half(isa, qs, sc, tb, lane0, xq, xsum, b, runtime(1), dd,
                                     (f4, f5, f6, f7))  # fmt: skip
        return f0, f1, f2, f3, f4, f5, f6, f7

    return dot


@inline
def SUMMS(m, s, acc):
    return acc + m * s


def kquant_shape(codes, group, block_scales, group_words, per_flush, quant_words=0,
                 split_min=False, per_pair=False, tiled_order=False, paired=False,
                 scale_words=0, n_halves=0):  # fmt: skip
    """The dot of a 256-weight super-block: d * sum_g scale_g * sum(code * x) - dm * sum_g
    min_g * bsum_g over its scale groups of 4 * group_words weights. quant_words > 0:
    prefetch that many words of the block ahead, a share with each group (spread out, so
    that few line fills are outstanding at once); with scale_words (and n_halves), the
    block's scale words and fp16 halves as well (prefetch_sides).

    split_min: the two terms accumulate apart, (f, fm), subtracted by acc_total, as
    llama.cpp's repacked Q4_K kernels sum; per_pair: in float after every two groups (its
    gemm, for prompt batches) instead of once per super-block (its gemv). tiled_order: as
    llama.cpp's "tiled" K-quant kernel sums batches of 8 tokens or more (Q6_K here): the
    super-block's whole integer times d_w, then fma with d_x."""
    sums_per_group = group_words // 4  # activation bsums (of 16) per scale group
    n_groups = 64 // group_words

    @inline
    def group_step(g, carry, args):
        isa, qs, sc, tb, lane0, b, xq, xsum = args
        isum, msum = carry
        if not paired:
            prefetch_lines(qs, tb, quant_words, g * quant_words // n_groups,
                           (g + 1) * quant_words // n_groups)  # fmt: skip
        scale, mn = group(isa, sc, tb, lane0, g)
        p = pzero(isa)
        for gg in range(group_words):
            k = group_words * g + gg
            p = pdot(isa, p, codes(isa, qs, tb, lane0, g, gg), act(isa, xq, b * 64 + k))
            if gg % per_flush == per_flush - 1:  # before the int16 partials could overflow
                isum = pflush_scaled(isa, isum, p, scale)
                p = pzero(isa)
        bsum = xsum[b * 16 + sums_per_group * g]
        if sums_per_group == 2:
            bsum += xsum[b * 16 + 2 * g + 1]
        return isum, msum + mn * np.int32(bsum)

    # paired: both groups of a pair written out, so that the group's parity is a constant
    # and the code readers' choices on it (Q3_K's split codes, Q2_K's word) fold away; for
    # Q3_K 19 -> 24 GB/s in L3 (2048x2048). Not for Q4_K / Q5_K, whose 8 groups of 8 words
    # then ran at 55-70 % of their speed
    group_pair = unrolled(group_step, 2)
    # quant lines prefetched per pair, written out (a prefetch loop per group split the
    # pair's code: Q3_K 24 -> 27 GB/s in L3, 78 -> 86 % from DRAM)
    pair_lines = 2 * quant_words // n_groups

    @inline
    def pair_flush(isa, dh, tb, lane0, b, xd, isum, msum, facc):  # per_pair: sums to float
        d, dm = block_scales(isa, dh, tb, lane0)
        f, fm = facc
        return fma(to_f32(isum), d * xd[b], f), fma(to_f32(msum), dm * xd[b], fm)

    @inline
    def dot(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
        if scale_words:
            prefetch_sides(sc, dh, tb, quant_words, scale_words, n_halves)
        isum = zeros_i32(isa)
        msum = zeros_i32(isa)
        args = (isa, qs, sc, tb, lane0, b, xq, xsum)
        if paired:
            for pair in range(n_groups // 2):
                for i in range(pair_lines):  # a constant count: no loop left
                    prefetch(qs, (tb * quant_words + pair * pair_lines + i) * 16 + PREFETCH_WORDS)
                isum, msum = group_pair(2 * pair, (isum, msum), args)
        else:
            for g in range(n_groups):
                isum, msum = group_step(g, (isum, msum), args)
                if per_pair and g % 2 == 1:
                    facc = pair_flush(isa, dh, tb, lane0, b, xd, isum, msum, facc)
                    isum = zeros_i32(isa)
                    msum = zeros_i32(isa)
        if per_pair:
            return facc
        d, dm = block_scales(isa, dh, tb, lane0)
        if tiled_order:
            return fma(to_f32(isum - msum) * d, splat_f32(isa, xd[b]), facc)
        if split_min:
            f, fm = facc
            return fma(to_f32(isum), d * xd[b], f), fma(to_f32(msum), dm * xd[b], fm)
        facc = fma(to_f32(isum), d * xd[b], facc)
        return fma(to_f32(msum), dm * (-xd[b]), facc)

    return dot


# ------------------------------------------------------------------ unpacked blocks
# buffers: codes int32 (64 words, 16 lanes), groups int32 (scales then mins, 16 x 16 lanes),
# floats float32 (d then dm/m, 16 lanes); the reads below stand in for tile_codes' functions


def unpacked_codes_reader(group_words):
    @inline
    def unpacked_codes(isa, codes_buf, tb, lane0, g, i):
        return load_i32(isa, codes_buf, (group_words * g + i) * 16 + lane0)

    return unpacked_codes


@inline
def unpacked_group(isa, groups_buf, tb, lane0, g):
    return load_i32(isa, groups_buf, g * 16 + lane0), load_i32(
        isa, groups_buf, 256 + g * 16 + lane0
    )


@inline
def unpacked_block_scales(isa, floats_buf, tb, lane0):
    return load_f32(isa, floats_buf, lane0), load_f32(isa, floats_buf, 16 + lane0)


def unpacker(codes, group, block_scales, group_words, n_groups, n_code_groups=0):
    n_code_groups = n_code_groups or n_groups

    @inline
    def unpack(isa, qs, sc, dh, tb, lane0, codes_buf, groups_buf, floats_buf):
        for g in range(n_code_groups):
            for i in range(group_words):
                k = group_words * g + i
                store_i32(codes_buf, k * 16 + lane0, codes(isa, qs, tb, lane0, g, i))
        for g in range(n_groups):
            scale, mn = group(isa, sc, tb, lane0, g)
            store_i32(groups_buf, g * 16 + lane0, scale)
            store_i32(groups_buf, 256 + g * 16 + lane0, mn)
        d, dm = block_scales(isa, dh, tb, lane0)
        store_f32(floats_buf, lane0, d)
        store_f32(floats_buf, 16 + lane0, dm)

    return unpack


# ------------------------------------------------------------------ two tokens per pass
# In prefill each unpacked code vector is loaded once for two tokens: half the code loads,
# and two independent dependency chains. Same arithmetic per token as the shapes above.
# 32-weight types only: a k-quant pair (16 lanes = 2 ymm per value) spills its scaled
# flushes and ran 10-40 % slower than one token at a time.


def legacy_pair_shape(offset, has_m, per_flush):
    # inlined by Numba, not LLVM (inline.py): compiled apart, with its two tuples of token
    # arrays, Q4_0's 512-token matmul ran 15-20 % slower
    @njit(inline="always")
    def dot(isa, codes_buf, floats_buf, lane0, b, xa, xb, fa, fb):
        xqa, xda, xsa, xsuma = xa
        xqb, xdb, xsb, xsumb = xb
        acc_a, acc_b = zeros_i32(isa), zeros_i32(isa)
        pa, pb = pzero(isa), pzero(isa)
        for v in range(4):
            c0 = load_i32(isa, codes_buf, v * 16 + lane0)
            c1 = load_i32(isa, codes_buf, (4 + v) * 16 + lane0)
            pa = pdot(isa, pa, c0, act(isa, xqa, b * 8 + v))
            pb = pdot(isa, pb, c0, act(isa, xqb, b * 8 + v))
            pa = pdot(isa, pa, c1, act(isa, xqa, b * 8 + 4 + v))
            pb = pdot(isa, pb, c1, act(isa, xqb, b * 8 + 4 + v))
            if (2 * v + 2) % per_flush == 0:
                acc_a, acc_b = pflush(isa, acc_a, pa), pflush(isa, acc_b, pb)
                pa, pb = pzero(isa), pzero(isa)
        if offset:
            acc_a = acc_a - np.int32(offset * xsuma[b])
            acc_b = acc_b - np.int32(offset * xsumb[b])
        d = load_f32(isa, floats_buf, lane0)
        if has_m:
            m = load_f32(isa, floats_buf, 16 + lane0)
            fa = fma(m, splat_f32(isa, xsa[b]), fa)
            fb = fma(m, splat_f32(isa, xsb[b]), fb)
        return fma(to_f32(acc_a), d * xda[b], fa), fma(to_f32(acc_b), d * xdb[b], fb)

    return dot


@inline
def no_group(isa, sc, tb, lane0, g):
    z = zeros_i32(isa)
    return z, z


# ------------------------------------------------------------------ unpacked rows
# The 8-lane types in prompt batches: a tile's blocks are unpacked once into row buffers
# (codes as bytes, d and m as floats) that every token then reads as a single token reads the
# tiles: the same 8 lane sums in the same order, without unpacking the codes again per token
# (llama.cpp's 8-lane order keeps 8 accumulators per row, too many to keep in memory per
# token as the unpacked block shapes do).
ROW_CODES = 8 * 16  # int32 per block: 8 code words, 16 rows
ROW_FLOATS = 2 * 16  # float32 per block: d, then m (Q4_1 / Q5_1), 16 rows


def row_unpacker(codes, block_scales, signed):
    """Signed codes are stored with their top bit flipped on AVX-512 VNNI (see
    legacy_exact_shape's flipped)."""
    flip = np.int32(-0x7F7F7F80) if signed else np.int32(0)  # 0x80 in every byte

    @inline
    def unpack_row(isa, qs, dh, t, n_blocks, lane0, codes_row, floats_row):
        for b in range(n_blocks):
            tb = t * n_blocks + b
            for k in range(8):
                c = codes(isa, qs, tb, lane0, k // 4, k % 4)
                if many_registers(isa):
                    c = c ^ flip
                store_i32(codes_row, b * ROW_CODES + k * 16 + lane0, c)
            d, m = block_scales(isa, dh, tb, lane0)
            store_f32(floats_row, b * ROW_FLOATS + lane0, d)
            store_f32(floats_row, b * ROW_FLOATS + 16 + lane0, m)

    return unpack_row


@inline
def row_codes(isa, codes_row, b, lane0, g, i):
    return load_i32(isa, codes_row, b * ROW_CODES + (4 * g + i) * 16 + lane0)


@inline
def row_block_scales(isa, floats_row, b, lane0):
    return (load_f32(isa, floats_row, b * ROW_FLOATS + lane0),
            load_f32(isa, floats_row, b * ROW_FLOATS + 16 + lane0))  # fmt: skip


class VnniOr(NamedTuple):
    """A one-token dot with an AVX-512 VNNI shape and one for the other paths: the dispatch
    (tile_dispatch.tile_dot) picks one as it types the call, so only that one compiles."""

    vnni: Callable
    plain: Callable

    def pick(self, isa_name: str) -> Callable:
        return self.vnni if isa_name in VNNI_NAMES else self.plain


DOTS, DOTS_UNPACKED, UNPACKERS = {}, {}, {}
DOTS_PAIR = {}
DOTS_ROW, ROW_UNPACKERS = {}, {}
# types whose rows keep 8 partial sums (ggml's lanes) instead of one: a tuple of 8 vectors
# (9 with a block minimum) from acc_zero to acc_total; type -> whether it has the minimum's
# sum. These are the types whose ggml order on x86 keeps 8 lanes (vec_dot, and tinyBLAS for
# Q8_0 and Q5_0 batches). The batch kernel, whose accumulators live in memory one vector per
# token, does not take them: linear_blocks runs their batches on unpacked rows (DOTS_ROW).
# Not Q4_0: llama.cpp repacks it on AVX2 (q4_0_8x8) into kernels with one float sum per row
# and block, the order of the plain shape.
EIGHT_LANE_TYPES = (T.Q8_0, T.Q4_1, T.Q5_0, T.Q5_1)
SPLIT_SUMS = {}
for _t, (_codes, _scales, _offset, _has_m, _signed, _per_flush) in LEGACY_PARTS.items():
    if _t in EIGHT_LANE_TYPES:
        SPLIT_SUMS[_t] = _has_m
        DOTS[_t] = legacy_exact_shape(_codes, _scales, _offset, _has_m, _signed,
                                      QUANT_WORDS[_t])  # fmt: skip
        ROW_UNPACKERS[_t] = row_unpacker(_codes, _scales, _signed)
        DOTS_ROW[_t] = legacy_exact_shape(row_codes, row_block_scales, _offset, _has_m, _signed,
                                          0, flipped=True)  # fmt: skip
        continue
    DOTS_PAIR[_t] = legacy_pair_shape(_offset, _has_m, _per_flush)
    DOTS[_t] = legacy_shape(_codes, _scales, _offset, _has_m, _per_flush, QUANT_WORDS[_t])
    DOTS_UNPACKED[_t] = legacy_shape(unpacked_codes_reader(4), unpacked_block_scales, _offset,
                                     _has_m, _per_flush)  # fmt: skip
    UNPACKERS[_t] = unpacker(_codes, no_group, _scales, 4, 0, 2)
# types whose rows keep the minimum's sum apart, (f, fm) -> f - fm, as llama.cpp's kernels for
# them sum on AVX2: Q4_K, which it repacks (q4_K_8x8). Its gemv (single tokens, and a batch's
# last n % 4) scales once per super-block; its gemm (the batch's first n - n % 4 tokens)
# after every 64 weights: DOTS_UNPACKED_GEMM.
SPLIT_MIN = {T.Q4_K}
DOTS_UNPACKED_GEMM = {}
# Q6_K: llama.cpp's vec_dot order (8 lanes) for fewer than TILED_FROM tokens, its tiled
# kernel's order (one sum per row) in batches from TILED_FROM tokens: linear.matmul routes
TILED_ORDER = {T.Q6_K}
TILED_FROM = 8
for _t, (_codes, _group, _scales, _words, _per_flush) in KQUANT_PARTS.items():
    if _t in TILED_ORDER:
        SPLIT_SUMS[_t] = False
        DOTS[_t] = q6_k_exact_shape(_codes, _group, _scales, QUANT_WORDS[_t])
        UNPACKERS[_t] = unpacker(_codes, _group, _scales, _words, 64 // _words)
        DOTS_UNPACKED[_t] = kquant_shape(unpacked_codes_reader(_words), unpacked_group,
                                         unpacked_block_scales, _words, _per_flush, 0,
                                         tiled_order=True)  # fmt: skip
        continue
    _split = _t in SPLIT_MIN
    DOTS[_t] = kquant_shape(_codes, _group, _scales, _words, _per_flush, QUANT_WORDS[_t], _split,
                            paired=_t in (T.Q2_K, T.Q3_K), scale_words=SCALE_WORDS[_t],
                            n_halves=N_HALVES[_t])  # fmt: skip
    if _t == T.Q2_K:
        _q2 = q2_k_vnni_shape(_scales, QUANT_WORDS[_t], PREFETCH_WORDS, prefetch_sides)
        DOTS[_t] = VnniOr(_q2, DOTS[_t])
    if _t == T.Q3_K:
        _q3 = q3_k_vnni_shape(_scales, QUANT_WORDS[_t], PREFETCH_WORDS, prefetch_sides)
        DOTS[_t] = VnniOr(_q3, DOTS[_t])
    DOTS_UNPACKED[_t] = kquant_shape(unpacked_codes_reader(_words), unpacked_group,
                                     unpacked_block_scales, _words, _per_flush, 0, _split)  # fmt: skip
    DOTS_UNPACKED_GEMM[_t] = kquant_shape(unpacked_codes_reader(_words), unpacked_group,
                                          unpacked_block_scales, _words, _per_flush, 0, _split,
                                          _split)  # fmt: skip
    UNPACKERS[_t] = unpacker(_codes, _group, _scales, _words, 64 // _words)

# four tokens per pass on AVX-512 VNNI (tile_quads.py): the 32-weight types with one float
# sum per row, and the k-quants in the order of their unpacked shapes above (Q4_K: the gemm's,
# which the batch's first n - n % 4 tokens take; the quads cover exactly those)
DOTS_QUAD = {}
CODE_BITS = {T.Q2_K: 2, T.Q3_K: 3, T.Q4_K: 4, T.Q5_K: 5, T.Q6_K: 6}  # unsigned codes' widths
for _t, (_codes, _scales, _offset, _has_m, _signed, _per_flush) in LEGACY_PARTS.items():
    if _t not in EIGHT_LANE_TYPES:
        DOTS_QUAD[_t] = legacy_quad_shape(_offset, _has_m)
for _t, (_codes, _group, _scales, _words, _per_flush) in KQUANT_PARTS.items():
    DOTS_QUAD[_t] = kquant_quad_shape(_words, CODE_BITS[_t], split_min=_t in SPLIT_MIN,
                                      per_pair=_t in SPLIT_MIN, tiled_order=_t in TILED_ORDER)  # fmt: skip
