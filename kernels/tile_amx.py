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
register (token_map; Q4_K's in fbuf): the same bits as every other path. The blocks go in
pairs through a pipeline (`pipeline`): a pair's tile dots, its tile stores and its float
steps a pair apart, on alternating tiles and cbuf regions (tiles are not renamed: a tile
dot waits until the previous user of its tiles is done), so that the float steps read
sums stored a stage earlier while the next pair's dots run. The k-quants but Q4_K fold
their scales into the codes (section at the end) and take a super-block per unit.
"""

from __future__ import annotations

import numpy as np

from .amx import tile_dot_ss, tile_dot_su, tile_load, tile_store, tile_zero
from .inline import inline
from .simd import (
    ashr,
    bits_f32,
    fma,
    load_f32,
    load_i32,
    prefetch_l1,
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
# units ahead of the float steps whose activations a pipeline's fetch stage brings into L1
FETCH_AHEAD = 4


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


def token_map(step):
    """An @inline run(first, accs, args) -> the tuple (step(first + i, accs[i], args) for i in
    0 .. 15), the TOKENS calls written out in one function: per-token accumulators that stay
    in registers."""

    @inline
    def run(first, accs, args):
        return (
            step(first, accs[0], args), step(first + 1, accs[1], args),
            step(first + 2, accs[2], args), step(first + 3, accs[3], args),
            step(first + 4, accs[4], args), step(first + 5, accs[5], args),
            step(first + 6, accs[6], args), step(first + 7, accs[7], args),
            step(first + 8, accs[8], args), step(first + 9, accs[9], args),
            step(first + 10, accs[10], args), step(first + 11, accs[11], args),
            step(first + 12, accs[12], args), step(first + 13, accs[13], args),
            step(first + 14, accs[14], args), step(first + 15, accs[15], args),
        )  # fmt: skip

    return run


@inline
def store_row(i, f, args):
    out, tok, col = args
    store_f32(out[tok + i], col, f)
    return f


store_rows = token_map(store_row)


@inline
def zero_sums(isa):
    """The 16 tokens' sums (token_map's accs), zero."""
    z = zeros_f32(isa)
    return (z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z)


def pair_store(ca, cb, at):
    """The store stage of a tile pipeline: C tiles ca and cb to cbuf[at:] and cbuf[at + 256:]
    (a[0] is cbuf)."""

    @inline
    def store(isa, q, a):
        tile_store(ca, a[0], at, 64)
        tile_store(cb, a[0], at + 256, 64)

    return store


@inline
def no_fetch(isa, q, a):
    pass


def pipeline(even, odd, floats, odd_at, fetch=None):
    """An @inline run(isa, n, a, acc) -> acc that takes units of tile work q = 0 .. n - 1
    (block pairs, group pairs or super-blocks) through three stages, each a unit behind the
    one before: issue (the tile dots into C tiles), store (the C tiles to cbuf), floats
    (each token's float steps on the stored sums). Units alternate between the C tiles and
    cbuf regions of even and odd, pairs (issue, store) of @inline f(isa, q, a) with `a` the
    tile rows' arrays; floats(isa, q, a, acc, at) reads the sums at cbuf[at:] (0 or odd_at)
    and returns the tokens' sums acc. So the tile unit runs unit q + 2's dots while the
    core takes unit q's float steps, and no tile store waits on a dot just issued nor a
    load on a tile store (back to back, the tile part and the float steps barely
    overlapped: Q4_0 4096x4096 x 512 tokens, one thread, 423 GOP/s against 410). One
    floats call in the loop, whichever the parity: written out for each, the float steps
    (16 tokens' worth) compiled twice, a second per tile type. fetch(isa, q, a), if given,
    prefetches unit q's activations into L1, called FETCH_AHEAD units ahead of its dots.

    The tile part and the float steps still add up more than they overlap: every tile
    instruction among the float steps delays them, whatever its kind, where alone it costs
    little (Q4_K's 16-token float steps alone 29-31 ns a unit; with two tile zeros a unit
    43 ns, though the zeros alone take 0.1 ns; with its whole tile part 52, the tile part
    alone 17). Fewer tile instructions per unit, not more float work hidden, is what pays."""
    issue_e, store_e = even
    issue_o, store_o = odd
    ahead = FETCH_AHEAD if fetch is not None else 0
    fetch = fetch or no_fetch

    @inline
    def run(isa, n, a, acc):
        if n > 0:
            issue_e(isa, 0, a)
        if n > 1:
            issue_o(isa, 1, a)
        if n > 0:
            store_e(isa, 0, a)
        for q in range(n):  # even units on the even tiles, odd ones on the odd
            if q % 2 == 0:
                if q + 1 < n:
                    store_o(isa, q + 1, a)
                if q + 2 < n:
                    issue_e(isa, q + 2, a)
            else:
                if q + 1 < n:
                    store_e(isa, q + 1, a)
                if q + 2 < n:
                    issue_o(isa, q + 2, a)
            if ahead and q + ahead < n:
                fetch(isa, q + ahead, a)
            acc = floats(isa, q, a, acc, odd_at * (q % 2))
        return acc

    return run


def legacy_tile_rows(offset, has_m):
    """`rows` (module doc) with tile_dots.legacy_shape's arithmetic, the 16 tokens' sums
    in registers (in fbuf, their loads and stores took 5-8 % longer). With a code offset
    (Q4_0's 8), sign_codes has taken it off the unpacked codes, so the tile dot is signed
    by signed (tdpbssd) and its sums need no correction: the same integers, 2 uops a token
    fewer."""
    dot = tile_dot_ss if offset else tile_dot_su

    @inline
    def token_floats(i, f, args):
        isa, d, m, xd, xs, cbuf, first = args
        if has_m:
            f = fma(m, splat_f32(isa, xs[i, 0]), f)
        s = load_i32(isa, cbuf, first + 16 * i)
        return fma(to_f32(s), d * xd[i], f)

    every_token = token_map(token_floats)

    @inline
    def block_floats(isa, floats_row, b, gd, gs, cbuf, first, acc):
        d, m = load_f32(isa, floats_row, 32 * b), load_f32(isa, floats_row, 32 * b + 16)
        return every_token(0, acc, (isa, d, m, gd[b], gs[b], cbuf, first))

    def block_pair(ca, cb, at):
        """The issue and store stages of block pair q (blocks 2q, 2q + 1) on tiles ca, cb
        and cbuf[at:]; a = (cbuf, codes_row, floats_row, gq, gd, gs)."""

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

        return issue, pair_store(ca, cb, at)

    @inline
    def floats(isa, q, a, acc, at):
        cbuf, floats_row, gd, gs = a[0], a[2], a[4], a[5]
        acc = block_floats(isa, floats_row, 2 * q, gd, gs, cbuf, at, acc)
        return block_floats(isa, floats_row, 2 * q + 1, gd, gs, cbuf, at + 256, acc)

    pairs = pipeline(block_pair(C0, C1, 0), block_pair(C2, C3, 512), floats, 512)

    @inline
    def rows(isa, codes_row, groups_row, floats_row, gq, gd, gs, gsum, cbuf, fbuf, out, tok, col):
        n_blocks = gq.shape[0]
        acc = zero_sums(isa)
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
        """The issue and store stages of group pair q (super-block q // 4, groups 2 (q %
        4) and the next) on tiles ca, cb and cbuf[at:]; a = (cbuf, codes_row, groups_row,
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

        return issue, pair_store(ca, cb, at)

    @inline
    def floats(isa, q, a, acc, at):
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

    # the tile loads of a pair's activations (16 lines, 256 bytes apart) waited on L2, the
    # pass's 64 KB of them had left L1: prefetched, 4096x4096 x 512 tokens, one thread,
    # GOP/s (medians, interleaved runs) 407-442 -> 459-522; the other tile rows gained
    # nothing (Q4_0, Q2_K, Q6_K: their activations are contiguous)
    @inline
    def fetch(isa, q, a):  # the pair's 64 bytes of each token, 256 bytes apart
        x = a[4][q // 4]
        for i in range(TOKENS):
            prefetch_l1(x, 64 * i + 16 * (q % 4))

    pairs = pipeline(group_pair(C0, C1, 0), group_pair(C2, C3, 512), floats, 512, fetch)

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
# A k-quant's group scales can be multiplied into its codes where each product fits a byte:
# a super-block's tile dots then sum its whole scaled integer sum into C tiles (four dots of
# 64 weights each), where the other tile rows need a tile store and float steps per
# 32-weight block or group. Q2_K: scale * code <= 45. Q3_K: -s * (u - 4), in -128..124
# (negated, as s * (u - 4) reaches 128). Q5_K's 6-bit scales split in two 3-bit halves (s =
# 8 hi + lo), each times a 5-bit code at most 217: two planes of codes and C tiles, isum = 8
# C_1 + C_0. Q6_K's int8 scales in three base-8 digits of -3..4 (s = p0 + 8 p1 + 64 p2),
# each times the signed code u - 32 in -128..124: three planes, isum = C_0 + 8 C_1 + 64 C_2.

LOW16 = np.int32(0xFFFF)
EVEN_BYTES = np.int32(0x00FF00FF)
PLAIN, NEGATED, SPLIT, DIGITS = (
    0,
    1,
    2,
    3,
)  # how a type's scales fold (tile_amx_types.FOLDED_SCALES)
PLANES = {PLAIN: 1, NEGATED: 1, SPLIT: 2, DIGITS: 3}  # folded copies of the codes


@inline
def offset_product(isa, w, p, offset):
    """Each byte u of the words w as the signed byte (u - offset) * p (I32xN; where that fits
    a byte): per 16-bit half of the even and odd bytes, p u + 256 - offset p, whose value
    stays in 0 .. 65535 (so one int32 multiply gives two bytes, whatever the signs)."""
    c = (splat_i32(isa, np.int32(256)) - p * offset) * np.int32(0x00010001)
    even, odd = w & EVEN_BYTES, (w >> 8) & EVEN_BYTES
    return ((even * p + c) & EVEN_BYTES) | (((odd * p + c) & EVEN_BYTES) << 8)


def fold_scales(kind, group_words):
    """An @inline fold(isa, codes_row, groups_row) for a tile row unpacked by tile_dots'
    k-quant unpacker (per super-block 1024 code words, word k of the 16 rows at 16 k, at the
    start of a stretch of 1024 per plane; scale and minimum of group g (group_words words)
    at 16 g and 256 + 16 g of its 512 group words), in place: the codes times their group's
    scale (module section above), plane after plane, and the minimums packed in int16
    pairs (16-weight groups 2j and 2j + 1, or a 32-weight group j twice, as
    tile_quads.kquant_quad_shape pairs them) at 16 j."""
    n_codes = 1024 * PLANES[kind]
    two_groups = group_words == 4  # 16-weight groups: a pair is two of them

    @inline
    def fold_word(isa, codes_row, at, w, s):
        if kind == PLAIN:
            store_i32(codes_row, at, w * s)  # every byte at most 3 * 15: no carries
        elif kind == NEGATED:
            store_i32(codes_row, at, offset_product(isa, w, zeros_i32(isa) - s, 4))
        elif kind == SPLIT:  # every byte at most 31 * 7
            store_i32(codes_row, at, w * (s & np.int32(7)))
            store_i32(codes_row, at + 1024, w * (s >> 3))
        else:
            p0 = ((s + np.int32(3)) & np.int32(7)) - np.int32(3)
            s1 = ashr(s - p0, 3)
            p1 = ((s1 + np.int32(3)) & np.int32(7)) - np.int32(3)
            store_i32(codes_row, at, offset_product(isa, w, p0, 32))
            store_i32(codes_row, at + 1024, offset_product(isa, w, p1, 32))
            store_i32(codes_row, at + 2048, offset_product(isa, w, ashr(s1 - p1, 3), 32))

    @inline
    def fold(isa, codes_row, groups_row):
        for b in range(groups_row.size // 512):
            codes, groups = n_codes * b, 512 * b
            for k in range(64):
                w = load_i32(isa, codes_row, codes + 16 * k)
                s = load_i32(isa, groups_row, groups + 16 * (k // group_words))
                fold_word(isa, codes_row, codes + 16 * k, w, s)
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
    codes, in the order of its tile_quads.kquant_quad_shape: per super-block, four tile dots
    of 64 weights per plane (A: the 16 tokens' 64 bytes, 256 bytes apart in the
    group-major rows; B: 16 code words of the 16 rows), each plane into its C tile, which
    give each token's scaled sum isum (section above; NEGATED: msum - isum). Then per token,
    the minimums' sum msum (8 vpdpwssd: the packed minimum pairs by gsum's packed pairs of
    16-weight activation sums) and f = fma(isum, d * xd, f), fma(msum, dm * -xd, f); DIGITS
    (Q6_K, tiled_order) f = fma(isum * d, xd, f) with no minimums. Tokens' sums in
    registers. Every tile is 16 x 64 bytes (rows_config(64)), so DIGITS's six C tiles (two
    super-blocks in flight) take A1's and B1's places, and its loads share A0 and B0."""
    n_planes = PLANES[kind]
    n_codes = 1024 * n_planes
    dot = tile_dot_su if kind == SPLIT else tile_dot_ss  # codes unsigned up to 217, or signed

    @inline
    def token_floats(i, f, args):
        isa, cbuf, at, groups_row, first, d, dm, xd, sums = args
        c = load_i32(isa, cbuf, at + 16 * i)
        if kind == DIGITS:
            c1, c2 = load_i32(isa, cbuf, at + 256 + 16 * i), load_i32(isa, cbuf, at + 512 + 16 * i)
            return fma(to_f32(c + (c1 << 3) + (c2 << 6)) * d, splat_f32(isa, xd[i]), f)
        msum = zeros_i32(isa)
        for j in range(8):
            pair = load_i32(isa, groups_row, first + 16 * j)
            msum = dot_i16(isa, msum, pair, splat_i32(isa, sums[i, j]))
        if kind == SPLIT:
            isum = (load_i32(isa, cbuf, at + 256 + 16 * i) << 3) + c
        else:
            isum = msum - c if kind == NEGATED else c
        f = fma(to_f32(isum), d * xd[i], f)
        return fma(to_f32(msum), dm * (-xd[i]), f)

    every_token = token_map(token_floats)

    def super_block(c0, c1, c2, a0, b0, a1, b1, at):
        """The issue and store stages of super-block q on C tiles c0 (c1, c2: the planes
        past the first), loads alternating between tiles a0, b0 and a1, b1, sums at
        cbuf[at:]; a = (cbuf, codes_row, groups_row, floats_row, gq, gd, gsum)."""

        def chunk_dots(x, w, second):
            """An @inline f(isa, q, h, codes_row, gq): every plane's dot of the 64-weight
            chunk 2 h + second, its activations loaded into tile x and codes into w."""

            @inline
            def run(isa, q, h, codes_row, gq):
                first = n_codes * q + 512 * h + 256 * second
                tile_load(x, gq[q], 32 * h + 16 * second, 256)
                tile_load(w, codes_row, first, 64)
                dot(c0, x, w)
                if n_planes > 1:
                    tile_load(w, codes_row, first + 1024, 64)
                    dot(c1, x, w)
                if n_planes > 2:
                    tile_load(w, codes_row, first + 2048, 64)
                    dot(c2, x, w)

            return run

        first_dots, second_dots = chunk_dots(a0, b0, 0), chunk_dots(a1, b1, 1)

        @inline
        def issue(isa, q, a):
            codes_row, gq = a[1], a[4]
            tile_zero(c0)
            if n_planes > 1:
                tile_zero(c1)
            if n_planes > 2:
                tile_zero(c2)
            for h in range(2):  # 64 weights a dot
                first_dots(isa, q, h, codes_row, gq)
                second_dots(isa, q, h, codes_row, gq)

        @inline
        def store(isa, q, a):
            tile_store(c0, a[0], at, 64)
            if n_planes > 1:
                tile_store(c1, a[0], at + 256, 64)
            if n_planes > 2:
                tile_store(c2, a[0], at + 512, 64)

        return issue, store

    @inline
    def floats(isa, q, a, acc, at):
        cbuf, groups_row, floats_row, gd, gsum = a[0], a[2], a[3], a[5], a[6]
        d, dm = load_f32(isa, floats_row, 32 * q), load_f32(isa, floats_row, 32 * q + 16)
        args = (isa, cbuf, at, groups_row, 512 * q, d, dm, gd[q], gsum[q])
        return every_token(0, acc, args)

    if kind == DIGITS:
        even = super_block(C0, C1, C2, A0, B0, A0, B0, 0)
        odd = super_block(A1, B1, C3, A0, B0, A0, B0, 768)
    else:  # (C1 and C3: the second plane, if any)
        even = super_block(C0, C1, C1, A0, B0, A1, B1, 0)
        odd = super_block(C2, C3, C3, A0, B0, A1, B1, 768)
    blocks = pipeline(even, odd, floats, 768)

    @inline
    def rows(isa, codes_row, groups_row, floats_row, gq, gd, gs, gsum, cbuf, fbuf, out, tok, col):
        acc = zero_sums(isa)
        a = (cbuf, codes_row, groups_row, floats_row, gq, gd, gsum)
        acc = blocks(isa, gq.shape[0], a, acc)
        store_rows(0, acc, (out, tok, col))

    return rows
