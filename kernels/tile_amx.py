"""Sixteen tokens per tile dot: prompt batches on AMX tiles (amx.py), avx512amx path only.

    rows(isa, codes_row, groups_row, floats_row, gq, gd, gs, gsum, cbuf, fbuf, out, tok, col)
writes out[tok .. tok + 15, col .. col + 15]: a tile row (16 weight rows, its 32-weight
blocks unpacked one after the other, PER_BLOCK code words of 16 rows and 2 x 16 floats each)
times tokens tok .. tok + 15, whose activations come group-major (tiled.group_major: gq[b]
holds block b's 32 bytes of each of the 16 tokens, gd[b] and gs[b] their scales and sums).
Per block, those 16 rows of bytes are one tile (A, signed), the block's codes another (B, 8
rows of the 16 weight rows' 4-byte words), and one tile dot gives all 256 exact integer
sums (C), stored to cbuf (row = token). Each token then takes the one-token shape's float
steps on its row of sums (tile_dots.legacy_shape), its accumulator across the blocks in a
register (token_map; Q4_K's second sum in fbuf): the same bits as every other path. The blocks go in pairs through a pipeline
(`pipeline`): a pair's tile dots, its tile stores and its float steps a pair apart, on
alternating tiles and cbuf halves (tiles are not renamed: a tile dot waits until the
previous user of its tiles is done), so that the float steps read sums stored a stage
earlier while the next pair's dots run.
"""

from __future__ import annotations

import numpy as np

from .amx import tile_dot_ss, tile_dot_su, tile_load, tile_store, tile_zero
from .inline import inline
from .simd import (
    bits_f32,
    fma,
    load_f32,
    load_i32,
    splat_f32,
    splat_i32,
    store_f32,
    store_i32,
    to_f32,
    zeros_f32,
    zeros_i32,
)
from .simd_dot import dot_i16

TOKENS = 16  # tokens per tile dot: the rows of tiles A and C
PER_BLOCK = 8 * 16  # unpacked code words per 32-weight tile block
C0, A0, B0, C1, A1, B1, C2, C3 = 0, 1, 2, 3, 4, 5, 6, 7  # two blocks in flight, two more ahead


@inline
def aligned_empty(n, dtype):
    """An empty 1-D array of n 4-byte elements starting on a 64-byte boundary. Tile rows
    that straddle cache lines load and store at half speed or worse (a tile step of two
    blocks: 16 ns aligned, 32-38 ns with the rows 16 or 32 bytes off)."""
    buf = np.empty(n + 16, dtype)
    skip = ((64 - buf.ctypes.data % 64) % 64) // 4
    return buf[skip : skip + n]


@inline
def rows_config(k_bytes):
    """The tile configuration (amx.config_tiles' bytes) of the tile rows, built in Numba
    code: C 16 rows of 64 bytes (16 int32 sums), A 16 rows of k_bytes (32: a block of 16
    tokens' int8 activations; 64 for the folded k-quants), B k_bytes / 4 rows of 64 bytes
    (the 16 weight rows' code words)."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1  # palette 1
    k_rows = k_bytes // 4
    for t, rows, n_bytes in ((C0, 16, 64), (A0, 16, k_bytes), (B0, k_rows, 64), (C1, 16, 64),
                             (A1, 16, k_bytes), (B1, k_rows, 64), (C2, 16, 64),
                             (C3, 16, 64)):  # fmt: skip
        cfg[16 + 2 * t] = n_bytes
        cfg[48 + t] = rows
    return cfg


@inline
def sign_codes(codes, n_words, offset):
    """Unsigned codes stored + offset (a power of two, in every byte of the words) as signed
    bytes: the offset's bit flipped, then the bits above it set where it is (the two's
    complement sign extension; each byte's product stays within the byte)."""
    high = offset * 0x01010101
    for i in range(n_words):
        t = codes[i] ^ high
        codes[i] = t | ((t & high) * (256 // offset - 2))


def token_map(step, n):
    """An @inline run(first, accs, args) -> the tuple (step(first + i, accs[i], args) for i in
    0 .. n - 1), every call written out: per-token accumulators that stay in registers."""
    if n == 1:

        @inline
        def one(first, accs, args):
            return (step(first, accs[0], args),)

        return one
    half = n // 2
    low, high = token_map(step, half), token_map(step, n - half)

    @inline
    def run(first, accs, args):
        return low(first, accs[:half], args) + high(first + half, accs[half:], args)

    return run


@inline
def store_row(i, f, args):
    out, tok, col = args
    store_f32(out[tok + i], col, f)
    return f


store_rows = token_map(store_row, TOKENS)


def pair_store(ca, cb, at):
    """The store stage of a tile pipeline: C tiles ca and cb to cbuf[at:] and cbuf[at + 256:]
    (a[0] is cbuf)."""

    @inline
    def store(isa, q, a):
        tile_store(ca, a[0], at, 64)
        tile_store(cb, a[0], at + 256, 64)

    return store


def pipeline(even, odd):
    """An @inline run(isa, n, a, acc) -> acc that takes units of tile work q = 0 .. n - 1
    (block pairs or group pairs) through three stages, each a unit behind the one before:
    issue (the tile dots into C tiles), store (the C tiles to cbuf), floats (each token's
    float steps on the stored sums). Units alternate between the C tiles and cbuf halves of
    even and odd, triples (issue, store, floats) of @inline f(isa, q, a) with `a` the tile
    rows' arrays (floats also takes and returns the tokens' sums, acc). So the tile unit runs unit q + 2's dots while the core takes unit q's float
    steps, and no tile store waits on a dot just issued nor a load on a tile store (back to
    back, the tile part and the float steps barely overlapped). Q4_0 4096x4096 x 512 tokens,
    one thread: 423 GOP/s (median of 5 runs) against 410 back to back."""
    issue_e, store_e, floats_e = even
    issue_o, store_o, floats_o = odd

    @inline
    def run(isa, n, a, acc):
        if n > 0:
            issue_e(isa, 0, a)
        if n > 1:
            issue_o(isa, 1, a)
        if n > 0:
            store_e(isa, 0, a)
        for q in range(0, n, 2):  # unit q on the even tiles, q + 1 on the odd
            if q + 1 < n:
                store_o(isa, q + 1, a)
            if q + 2 < n:
                issue_e(isa, q + 2, a)
            acc = floats_e(isa, q, a, acc)
            if q + 1 < n:
                if q + 2 < n:
                    store_e(isa, q + 2, a)
                if q + 3 < n:
                    issue_o(isa, q + 3, a)
                acc = floats_o(isa, q + 1, a, acc)
        return acc

    return run


def legacy_tile_rows(offset, has_m):
    """`rows` (module doc) with tile_dots.legacy_shape's arithmetic, the 16 tokens' sums
    in registers (in fbuf, their loads and stores took 5-8 % longer). With a code offset (Q4_0's 8), sign_codes has taken it off
    the unpacked codes, so the tile dot is signed by signed (tdpbssd) and its sums need no
    correction: the same integers, 2 uops a token fewer."""
    dot = tile_dot_ss if offset else tile_dot_su

    @inline
    def token_floats(i, f, args):
        isa, d, m, xd, xs, cbuf, first = args
        if has_m:
            f = fma(m, splat_f32(isa, xs[i, 0]), f)
        s = load_i32(isa, cbuf, first + 16 * i)
        return fma(to_f32(s), d * xd[i], f)

    every_token = token_map(token_floats, TOKENS)

    @inline
    def block_floats(isa, floats_row, b, gd, gs, cbuf, first, acc):
        d, m = load_f32(isa, floats_row, 32 * b), load_f32(isa, floats_row, 32 * b + 16)
        return every_token(0, acc, (isa, d, m, gd[b], gs[b], cbuf, first))

    def block_pair(ca, cb, at):
        """The pipeline stages of block pair q (blocks 2q, 2q + 1) on tiles ca, cb and
        cbuf[at:]; a = (cbuf, codes_row, floats_row, gq, gd, gs); floats returns the
        tokens' sums (acc) after the pair."""

        @inline
        def issue(isa, q, a):
            codes_row, gq = a[1], a[3]
            tile_zero(ca)
            tile_load(A0, gq[2 * q], 0, 32)
            tile_load(B0, codes_row, PER_BLOCK * 2 * q, 64)
            dot(ca, A0, B0)
            tile_zero(cb)
            tile_load(A1, gq[2 * q + 1], 0, 32)
            tile_load(B1, codes_row, PER_BLOCK * (2 * q + 1), 64)
            dot(cb, A1, B1)

        @inline
        def floats(isa, q, a, acc):
            cbuf, floats_row, gd, gs = a[0], a[2], a[4], a[5]
            acc = block_floats(isa, floats_row, 2 * q, gd, gs, cbuf, at, acc)
            return block_floats(isa, floats_row, 2 * q + 1, gd, gs, cbuf, at + 256, acc)

        return issue, pair_store(ca, cb, at), floats

    pairs = pipeline(block_pair(C0, C1, 0), block_pair(C2, C3, 512))

    @inline
    def rows(isa, codes_row, groups_row, floats_row, gq, gd, gs, gsum, cbuf, fbuf, out, tok, col):
        n_blocks = gq.shape[0]
        z = zeros_f32(isa)
        acc = (z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z)
        acc = pairs(isa, n_blocks // 2, (cbuf, codes_row, floats_row, gq, gd, gs), acc)
        if n_blocks % 2:  # an odd last block alone, every pair done
            b = n_blocks - 1
            tile_zero(C0)
            tile_load(A0, gq[b], 0, 32)
            tile_load(B0, codes_row, PER_BLOCK * b, 64)
            dot(C0, A0, B0)
            tile_store(C0, cbuf, 0, 64)
            acc = block_floats(isa, floats_row, b, gd, gs, cbuf, 0, acc)
        store_rows(0, acc, (out, tok, col))

    return rows


def q4_k_tile_rows():
    """`rows` (module doc) for Q4_K super-blocks in the order of llama.cpp's repacked gemm
    (tile_quads.kquant_quad_shape with split_min and per_pair): per pair of 32-weight
    groups, one tile dot each (A: the group's 32 bytes of each token, 256 bytes apart in
    the group-major rows); per token, the pair's sum of scale * group sum and of min *
    activation sum, each to float into its own sum (f and the minimum's fm in fbuf, 16
    tokens x 32 floats); the rows are f - fm. Those integer sums are formed in float and
    are exact there, as every term and partial sum stays below 2**24 (a group sum at most
    32 * 15 * 127, a scale or min at most 63, an activation sum (gsum, per group, as float)
    at most 32 * 127): 6 uops a token and pair fewer than vpmulld and vpdpwssd, the same
    bits. Extra arguments: the unpacked scales and mins (groups_row, 512 words per
    super-block), gsum and fbuf."""

    def group_pair(ca, cb, at):
        """The pipeline stages of group pair q (super-block q // 4, groups 2 (q % 4) and
        the next) on tiles ca, cb and cbuf[at:]; a = (cbuf, codes_row, groups_row,
        floats_row, gq, gd, gsum, fbuf)."""

        @inline
        def issue(isa, q, a):
            codes_row, gq = a[1], a[4]
            b, g0 = q // 4, 2 * (q % 4)
            tile_zero(ca)
            tile_load(A0, gq[b], 8 * g0, 256)
            tile_load(B0, codes_row, 1024 * b + 128 * g0, 64)
            tile_dot_su(ca, A0, B0)
            tile_zero(cb)
            tile_load(A1, gq[b], 8 * g0 + 8, 256)
            tile_load(B1, codes_row, 1024 * b + 128 * g0 + 128, 64)
            tile_dot_su(cb, A1, B1)

        @inline
        def floats(isa, q, a, acc):
            cbuf, groups_row, floats_row, gd, gsum, fbuf = a[0], a[2], a[3], a[5], a[6], a[7]
            b, g0 = q // 4, 2 * (q % 4)
            d, dm = load_f32(isa, floats_row, 32 * b), load_f32(isa, floats_row, 32 * b + 16)
            xd, sums = gd[b], gsum[b]
            first = 512 * b + 16 * g0
            s0 = to_f32(load_i32(isa, groups_row, first))
            s1 = to_f32(load_i32(isa, groups_row, first + 16))
            m0 = to_f32(load_i32(isa, groups_row, first + 256))
            m1 = to_f32(load_i32(isa, groups_row, first + 272))
            for i in range(TOKENS):
                c1 = to_f32(load_i32(isa, cbuf, at + 256 + 16 * i)) * s1
                isum = fma(to_f32(load_i32(isa, cbuf, at + 16 * i)), s0, c1)
                x0 = bits_f32(splat_i32(isa, sums[i, g0]))  # float sums, as int32 bits
                msum = fma(m0, x0, m1 * bits_f32(splat_i32(isa, sums[i, g0 + 1])))
                store_f32(fbuf, 32 * i, fma(isum, d * xd[i], load_f32(isa, fbuf, 32 * i)))
                fm = fma(msum, dm * xd[i], load_f32(isa, fbuf, 32 * i + 16))
                store_f32(fbuf, 32 * i + 16, fm)
            return acc

        return issue, pair_store(ca, cb, at), floats

    pairs = pipeline(group_pair(C0, C1, 0), group_pair(C2, C3, 512))

    @inline
    def rows(isa, codes_row, groups_row, floats_row, gq, gd, gs, gsum, cbuf, fbuf, out, tok, col):
        z = zeros_f32(isa)
        for i in range(TOKENS):
            store_f32(fbuf, 32 * i, z)
            store_f32(fbuf, 32 * i + 16, z)
        a = (cbuf, codes_row, groups_row, floats_row, gq, gd, gsum, fbuf)
        pairs(isa, 4 * gq.shape[0], a, 0)  # 4 group pairs per super-block
        for i in range(TOKENS):
            store_f32(
                out[tok + i], col, load_f32(isa, fbuf, 32 * i) - load_f32(isa, fbuf, 32 * i + 16)
            )

    return rows


# ------------------------------------------------------------ k-quants with folded scales
# Q2_K's and Q3_K's group scales are small enough to multiply into their codes: scale *
# code fits a byte (Q2_K 0..45; Q3_K's signed -s * (u - 4), -128..124, negated as s * (u -
# 4) reaches 128). A super-block's tile dots then sum its whole scaled integer sum into one
# C tile (four dots of 64 weights), where the other tile rows need a tile store and float
# steps per 32-weight block or group: 256 weights per store. Q5_K's 6-bit scales split in
# two 3-bit halves (s = 8 hi + lo), each times a 5-bit code at most 217: two sets of codes
# and two C tiles, isum = 8 C_hi + C_lo.

LOW16 = np.int32(0xFFFF)
EVEN_BYTES = np.int32(0x00FF00FF)
PLAIN, NEGATED, SPLIT = 0, 1, 2  # how a type's scales fold (FOLDED_SCALES in tile_dots)


def fold_scales(kind, group_words):
    """An @inline fold(isa, codes_row, groups_row) for a tile row unpacked by tile_dots'
    k-quant unpacker (per super-block 1024 code words, word k of the 16 rows at 16 k, in a
    stretch of 1024 (2048 if SPLIT); scale and minimum of group g (group_words words) at
    16 g and 256 + 16 g of its 512 group words): each code byte times its group's scale
    (NEGATED: the signed code byte u - 4, times -scale; SPLIT: times the scale's low 3
    bits, and again times its high 3 bits into the second 1024 words), and the minimums
    packed in int16 pairs (16-weight groups 2j and 2j + 1, or a 32-weight group j twice,
    as tile_quads.kquant_quad_shape pairs them) at 16 j, in place.

    Negated, per 16-bit half of the even and odd bytes: s (4 - u) + 256 = (s + 32)(16 - u)
    - 12 (s + 32) + 32 u + 128, every term of which stays in its half (0 .. 1008 before
    the constant, 128 .. 380 after), so one int32 multiply gives two bytes."""
    codes_per_block = 2048 if kind == SPLIT else 1024
    two_groups = group_words == 4  # 16-weight groups: a pair is two of them

    @inline
    def fold_word(isa, w, s):
        if kind != NEGATED:
            return w * s  # every byte at most 3 * 15, or 31 * 7: no carries
        s32 = s + np.int32(32)
        c = (splat_i32(isa, np.int32(128)) - s32 * np.int32(12)) * np.int32(0x00010001)
        top = splat_i32(isa, np.int32(0x00100010))
        even, odd = w & EVEN_BYTES, (w >> 8) & EVEN_BYTES
        g_even = (top - even) * s32 + (even << 5) + c
        g_odd = (top - odd) * s32 + (odd << 5) + c
        return (g_even & EVEN_BYTES) | ((g_odd & EVEN_BYTES) << 8)

    @inline
    def fold(isa, codes_row, groups_row):
        for b in range(groups_row.size // 512):
            codes, groups = codes_per_block * b, 512 * b
            for k in range(64):
                w = load_i32(isa, codes_row, codes + 16 * k)
                s = load_i32(isa, groups_row, groups + 16 * (k // group_words))
                if kind == SPLIT:
                    store_i32(codes_row, codes + 1024 + 16 * k, w * (s >> 3))
                    s = s & np.int32(7)
                store_i32(codes_row, codes + 16 * k, fold_word(isa, w, s))
            for j in range(8):  # after the scales are read: the pairs take their place
                if two_groups:
                    lo = load_i32(isa, groups_row, groups + 256 + 32 * j)
                    hi = load_i32(isa, groups_row, groups + 272 + 32 * j)
                else:
                    lo = hi = load_i32(isa, groups_row, groups + 256 + 16 * j)
                store_i32(groups_row, groups + 16 * j, (lo & LOW16) | (hi << 16))

    return fold


def folded_tile_rows(kind):
    """`rows` (module doc) for a k-quant whose scales fold_scales has multiplied into the
    codes, in the order of tile_quads.kquant_quad_shape (neither split_min nor
    tiled_order): per super-block, four tile dots of 64 weights into one C tile (A: the 16
    tokens' 64 bytes, 256 bytes apart in the group-major rows; B: 16 code words of the 16
    rows; SPLIT: four more, with the same A tiles, into a second C tile), giving each
    token's scaled sum isum (NEGATED: msum - isum; SPLIT: 8 C_hi + C_lo); per token, the
    minimums' sum msum (8 vpdpwssd: the packed minimum pairs by gsum's packed pairs of
    16-weight activation sums), then f = fma(isum, d * xd, f) and fma(msum, dm * -xd, f), as
    there (f in registers). The tiles are configured with 64-byte A rows (rows_config(64)).
    Codes are unsigned but NEGATED's, so SPLIT's dots are signed by unsigned."""
    split = kind == SPLIT
    dot = tile_dot_su if split else tile_dot_ss  # (Q2_K's codes fit either)
    n_codes = 2048 if split else 1024

    @inline
    def token_floats(i, f, args):
        isa, cbuf, at, groups_row, first, d, dm, xd, sums = args
        msum = zeros_i32(isa)
        for j in range(8):
            pair = load_i32(isa, groups_row, first + 16 * j)
            msum = dot_i16(isa, msum, pair, splat_i32(isa, sums[i, j]))
        c = load_i32(isa, cbuf, at + 16 * i)
        if split:
            isum = (load_i32(isa, cbuf, at + 256 + 16 * i) << 3) + c
        else:
            isum = msum - c if kind == NEGATED else c
        f = fma(to_f32(isum), d * xd[i], f)
        return fma(to_f32(msum), dm * (-xd[i]), f)

    every_token = token_map(token_floats, TOKENS)

    def super_block(c, c_hi, at):
        """The pipeline stages of super-block q on tile c (and c_hi) and cbuf[at:]; a =
        (cbuf, codes_row, groups_row, floats_row, gq, gd, gsum)."""

        @inline
        def issue(isa, q, a):
            codes_row, gq = a[1], a[4]
            tile_zero(c)
            if split:
                tile_zero(c_hi)
            for h in range(2):  # 64 weights a dot, alternating tiles so loads overlap dots
                first = n_codes * q + 512 * h
                tile_load(A0, gq[q], 32 * h, 256)
                tile_load(B0, codes_row, first, 64)
                dot(c, A0, B0)
                if split:
                    tile_load(B0, codes_row, first + 1024, 64)
                    dot(c_hi, A0, B0)
                tile_load(A1, gq[q], 32 * h + 16, 256)
                tile_load(B1, codes_row, first + 256, 64)
                dot(c, A1, B1)
                if split:
                    tile_load(B1, codes_row, first + 1280, 64)
                    dot(c_hi, A1, B1)

        @inline
        def store(isa, q, a):
            tile_store(c, a[0], at, 64)
            if split:
                tile_store(c_hi, a[0], at + 256, 64)

        @inline
        def floats(isa, q, a, acc):
            cbuf, groups_row, floats_row, gd, gsum = a[0], a[2], a[3], a[5], a[6]
            d, dm = load_f32(isa, floats_row, 32 * q), load_f32(isa, floats_row, 32 * q + 16)
            args = (isa, cbuf, at, groups_row, 512 * q, d, dm, gd[q], gsum[q])
            return every_token(0, acc, args)

        return issue, store, floats

    blocks = pipeline(super_block(C0, C1, 0), super_block(C2, C3, 512))

    @inline
    def rows(isa, codes_row, groups_row, floats_row, gq, gd, gs, gsum, cbuf, fbuf, out, tok, col):
        z = zeros_f32(isa)
        acc = (z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z)
        a = (cbuf, codes_row, groups_row, floats_row, gq, gd, gsum)
        acc = blocks(isa, gq.shape[0], a, acc)
        store_rows(0, acc, (out, tok, col))

    return rows
