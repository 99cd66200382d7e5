"""The fused matrix kernels: one call quantizes the input and runs every tile.

    run_block_tiles(task, quantizer, input_format, n_tiles, quants, scales, halves, x, out)
        with task = block_task(ONE_TOKEN | HALVES | BATCH, isa, qtype), quantizer = quantize_task()
    linear_tail(qtype, tail, x, out)
        W of a block type in tiles (repack.Tiles fields, flat) plus tail rows in file blocks;
        x (n_tok, n_in) float32, out (n_tok, n_out) float32 = x @ W.T: the tiled rows, then
        the tail rows.
    linear_float(float_tile_task(isa, kind), kind, tiles, tail, x, out)
        F32 / BF16 (kind 0 / 2) W: tiles flat (n_tiles, n_in, 16) float32 or uint16
        bits, tail (n_out % 16, n_in).
BATCH unpacks each tile block once for many tokens; HALVES runs 8-row vectors through both
halves of each tile block in one pass (linear.NARROW_TYPES). isa and qtype are static
tokens (static.py). run_block_tiles quantizes x and splits the tiles over the thread pool,
each thread running the task function on its share (threads.py: a task function compiles in
half the time of a prange kernel, the block kernels' cold compile 28 -> 23 s); each
token's pass over a tile re-reads the tile's row of blocks from cache, so the weights
stream from memory once per call whatever the number of tokens.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import carray, cfunc, njit

from ..formats.ggml_types import GGMLType as T
from .amx import config_tiles, release_tiles
from .dot_rows import dot_float_row, dot_row
from .inline import inline
from .quantize_activations import (
    Q5_0_WORDS,
    Q8_0_WORDS,
    Q8_K,
    format_code,
    input_arrays,
    quantize_input,
    quantize_rows,
    quantize_rows_q5_0_words,
    quantize_rows_q8,
    quantize_rows_q8_0_words,
    quantize_rows_q8_k,
)
from .scalar import bf16_to_f32, f32_to_bits
from .simd import (
    VNNI_NAMES,
    copy_elements,
    fma,
    has_tiles,
    lanes,
    load_bf16,
    load_f32,
    splat_f32,
    store_f32,
    zeros_f32,
)
from .threads import TASK_SIG, keep_alive, parallel_for, pointer, start_pool, task_range
from .tile_amx import TOKENS, aligned_empty, rows_config
from .tile_amx_types import FOLDED_SCALES
from .tile_dispatch import (
    acc_load,
    acc_row_total,
    acc_store,
    acc_total,
    acc_zero,
    has_pair_shape,
    has_row_shape,
    has_tile_shape,
    tile_dot,
    tile_dot_row,
    tile_dot_unpacked,
    tile_dot_unpacked_gemm,
    tile_dot_unpacked_pair,
    tile_dot_unpacked_quad,
    tile_row_finish,
    tile_row_words,
    tile_rows_tiles,
    tile_unpack,
    tile_unpack_row,
)
from .tile_dots import (
    DOTS_QUAD,
    ROW_CODES,
    ROW_FLOATS,
    UNPACKED_CODES,
    UNPACKED_FLOATS,
    UNPACKED_GROUPS,
)
from .tile_quads import QUAD

FLOAT_F32, FLOAT_BF16 = 0, 2  # (F16 weights: rows_f16.py)


BATCH_FROM = 4  # tokens from which blocks are unpacked once for all tokens


@inline
def block_arrays(data, xs_dtype):
    """The arrays run_block_tiles passes its task functions, from its argument block."""
    a = carray(pointer(data, np.int64), N_ARGV)
    n_tok, n_in, n_blocks = a[14], a[15], a[16]
    return (carray(pointer(a[0], np.int32), a[1]), carray(pointer(a[2], np.int32), a[3]),
            carray(pointer(a[4], np.uint16), a[5]),
            carray(pointer(a[6], np.int32), (n_tok, n_in // 4)),
            carray(pointer(a[7], np.float32), (n_tok, n_blocks)),
            carray(pointer(a[8], xs_dtype), (n_tok, a[9])),
            carray(pointer(a[10], np.int32), (n_tok, a[11])),
            carray(pointer(a[12], np.float32), (n_tok, a[13])))  # fmt: skip


def one_token_task(isa, qtype, xs_dtype):
    """Tiles one token at a time (the 8-lane types from BATCH_FROM tokens on unpacked
    rows, see tile_dots)."""

    @cfunc(TASK_SIG, cache=True)
    def task(args, dims, steps, data):
        first, count = task_range(args, dims)
        quants, scales, halves, xq32, xd, xs, xsum, out = block_arrays(data, xs_dtype)
        n_tok, n_blocks = xd.shape
        # rows per vector: a tile in 16 / step passes (from cache after the first)
        step = lanes(isa)
        rows = has_row_shape(qtype) and n_tok >= BATCH_FROM
        codes_row, floats_row = np.empty(0, np.int32), np.empty(0, np.float32)
        if rows:
            codes_row = np.empty(n_blocks * ROW_CODES, np.int32)
            floats_row = np.empty(n_blocks * ROW_FLOATS, np.float32)
        for t in range(first, first + count):
            for lane0 in range(0, 16, step):
                if rows:
                    tile_unpack_row(qtype, isa, quants, halves, t, n_blocks, lane0, codes_row,
                                    floats_row)  # fmt: skip
                for tok in range(n_tok):
                    x_q, x_d, x_s, x_sum = xq32[tok], xd[tok], xs[tok], xsum[tok]
                    facc = acc_zero(qtype, isa)
                    if rows:
                        for b in range(n_blocks):
                            facc = tile_dot_row(qtype, isa, codes_row, floats_row, b, lane0, x_q,
                                                x_d, x_s, x_sum, facc)  # fmt: skip
                    else:
                        for b in range(n_blocks):
                            tb = t * n_blocks + b
                            facc = tile_dot(qtype, isa, quants, scales, halves, tb, lane0, b, x_q,
                                            x_d, x_s, x_sum, facc)  # fmt: skip
                    store_f32(out[tok], t * 16 + lane0, acc_total(qtype, isa, facc))

    return task


def halves_task(isa, qtype, xs_dtype):
    """As one_token_task, for an isa of 8 rows per vector: the two halves of each tile
    block one after the other, so that the tile streams from memory in one pass (a pass per
    half, the second from cache, left DRAM idle: Q6_K matvec 15 GB/s instead of 27)."""

    @cfunc(TASK_SIG, cache=True)
    def task(args, dims, steps, data):
        first, count = task_range(args, dims)
        quants, scales, halves, xq32, xd, xs, xsum, out = block_arrays(data, xs_dtype)
        n_tok, n_blocks = xd.shape
        for t in range(first, first + count):
            for tok in range(n_tok):
                x_q, x_d, x_s, x_sum = xq32[tok], xd[tok], xs[tok], xsum[tok]
                facc, fnext = acc_zero(qtype, isa), acc_zero(qtype, isa)
                for i in range(2 * n_blocks):  # rows 8 * (i % 2) .. of block i // 2
                    b = i // 2
                    facc = tile_dot(qtype, isa, quants, scales, halves, t * n_blocks + b,
                                    8 * (i % 2), b, x_q, x_d, x_s, x_sum, facc)  # fmt: skip
                    facc, fnext = fnext, facc  # one dot inlined, not two (compile time)
                store_f32(out[tok], t * 16, acc_total(qtype, isa, facc))
                store_f32(out[tok], t * 16 + 8, acc_total(qtype, isa, fnext))

    return task


@inline
def block_major(xq32, xd, xs, xsum, wanted):
    """The activations regrouped by block position, (n_blocks, n_tok, ...): the four-token
    shapes read a block's activations for token after token, which in quantize_input's
    layout lie a row (4 KiB at 4096 weights) apart, each in its own page and all in one L1
    set. A 256-block's 16 sums become 8 words of two int16 each (tile_quads' vpdpwssd).
    Empty arrays unless wanted."""
    n_tok, n_blocks = xd.shape
    words, n_xs, n_sums = xq32.shape[1] // n_blocks, xs.shape[1] // n_blocks, xsum.shape[1]
    n_sums //= n_blocks
    paired = n_sums == 16
    n_out_sums = n_sums // 2 if paired else n_sums
    if not wanted:
        n_tok = n_blocks = 0
    bq = np.empty(n_blocks * n_tok * words, np.int32)  # flat, then shaped (n_blocks, n_tok, ..)
    bd = np.empty((n_blocks, n_tok), np.float32)
    bs = np.empty(n_blocks * n_tok * n_xs, xs.dtype)
    bsum = np.empty((n_blocks, n_tok, n_out_sums), np.int32)
    q, s = xq32.ravel(), xs.ravel()
    for t in range(n_tok):  # per element or memcpy, not slice copies: those took 2.6 ms, not
        # 1.0 (512 tokens x 4096, Q8_0 blocks), in every thread of every prompt matmul
        for b in range(n_blocks):
            k = b * n_tok + t
            copy_elements(bq, k * words, q, (t * n_blocks + b) * words, words)
            copy_elements(bs, k * n_xs, s, (t * n_blocks + b) * n_xs, n_xs)
            bd[b, t] = xd[t, b]
            if paired:
                for j in range(8):  # |sum| <= 16 * 127: fits int16
                    lo, hi = xsum[t, b * 16 + 2 * j], xsum[t, b * 16 + 2 * j + 1]
                    bsum[b, t, j] = (lo & 0xFFFF) | (hi << 16)
            else:
                for i in range(n_sums):
                    bsum[b, t, i] = xsum[t, b * n_sums + i]
    return bq.reshape((n_blocks, n_tok, words)), bd, bs.reshape((n_blocks, n_tok, n_xs)), bsum


@inline
def group_major(xq32, xd, xs, xsum, n_groups, packed):
    """The first 16 * n_groups tokens' activations regrouped for the AMX tile rows
    (tile_amx): (n_groups, n_blocks, 16, ...), so that a group's pass over a tile row reads
    them in order, each block's 16 x 32 bytes one tile load (block-major, a group's blocks
    lay a page apart: 128 pages per pass at 4096 weights). For 256-weight blocks, gsum
    holds 8 words per block: with `packed` the 16-weight activation sums in pairs (int16
    halves, as block_major pairs them), else the 32-weight sums as float32 bits."""
    n_blocks = xd.shape[1]
    words, n_xs = xq32.shape[1] // n_blocks, xs.shape[1] // n_blocks
    n_pairs = 8 if xsum.shape[1] == 16 * n_blocks else 0  # 256-blocks: sums of 32
    n = n_groups * n_blocks * TOKENS  # flat, then shaped (n_groups, n_blocks, TOKENS, ..)
    gq = aligned_empty(n * words, np.int32)  # tile loads
    gd = np.empty(n, np.float32)
    gs = np.empty(n * n_xs, xs.dtype)
    gsum = np.empty((n, n_pairs), np.int32)
    q, s = xq32.ravel(), xs.ravel()
    for t in range(n_groups * TOKENS):
        g, i = t // TOKENS, t % TOKENS
        for b in range(n_blocks):
            k = (g * n_blocks + b) * TOKENS + i
            copy_elements(gq, k * words, q, (t * n_blocks + b) * words, words)
            copy_elements(gs, k * n_xs, s, (t * n_blocks + b) * n_xs, n_xs)
            gd[k] = xd[t, b]
            for j in range(n_pairs):
                lo, hi = xsum[t, b * 16 + 2 * j], xsum[t, b * 16 + 2 * j + 1]
                if packed:  # |sum| <= 16 * 127: fits int16
                    gsum[k, j] = (lo & 0xFFFF) | (hi << 16)
                else:  # exact: |sum| <= 32 * 127
                    gsum[k, j] = np.int32(f32_to_bits(np.float32(lo + hi)))
    shape = (n_groups, n_blocks, TOKENS)
    return (gq.reshape(shape + (words,)), gd.reshape(shape), gs.reshape(shape + (n_xs,)),
            gsum.reshape(shape + (n_pairs,)))  # fmt: skip


# tile rows per pass of the AMX tiles: each token group's activations (a tile load per block,
# 64 KB a group at 4096 weights) are read once per pass, from L2, where taking the rows one
# at a time read them from L3 (every group's, 2 MB at 512 tokens, between two uses). 4096x4096
# Q4_0 x 512 tokens, one thread, GOP/s: 480 one row a pass, 612 four; Q4_K 316, 417
ROWS_PER_PASS = 4
# at most, and as many as fit this many bytes of unpacked codes (half of L2): Q6_K's three
# planes at 14336 weights are 672 KB a row, and four of them per pass ran at 511 GOP/s
# where one or two ran at 877 and 863 (x 512 tokens, two threads)
PASS_BYTES = 1 << 20


def batch_task(isa, qtype, xs_dtype):
    """As one_token_task, for many tokens: each tile block is unpacked once into small
    buffers (in L1) and then dotted with every token's activations."""
    # four-token shapes need AVX-512 VNNI's registers; where they run, they take every token
    # below n_gemm, and the gemm-order single-token dot is never reached: as closure
    # constants, Numba prunes what a type and isa do not run, unread
    quads = qtype.value in DOTS_QUAD and isa.value[0] in VNNI_NAMES
    gemm_singles = not quads
    folded = qtype.value in FOLDED_SCALES  # (AMX tile rows: activation sums paired)

    @cfunc(TASK_SIG, cache=True)
    def task(args, dims, steps, data):
        first, count = task_range(args, dims)
        quants, scales, halves, xq32, xd, xs, xsum, out = block_arrays(data, xs_dtype)
        n_tok, n_blocks = xd.shape
        step = lanes(isa)
        n_gemm = n_tok - n_tok % 4  # the tokens llama.cpp's repacked gemm takes (tile_dots)
        codes_buf = np.empty(UNPACKED_CODES, np.int32)
        groups_buf = np.empty(UNPACKED_GROUPS, np.int32)
        floats_buf = np.empty(UNPACKED_FLOATS, np.float32)
        acc = np.empty((n_tok, 32), np.float32)  # a tile's sums per token (acc_load)
        pairs = has_pair_shape(qtype)
        # AMX tiles from two token groups on: a tile row is unpacked whole for them, which
        # one group does not repay (4096x4096 Q4_0, GOP/s AMX / VNNI: 16 tokens 539 / 617,
        # 32 tokens 757 / 607, 512 tokens 909 / 601)
        tiles = has_tile_shape(qtype) and has_tiles(isa) and n_tok >= 2 * TOKENS
        n_tiled = n_tok - n_tok % TOKENS if tiles else 0  # tokens on AMX tiles
        gq, gd, gs, gsum = group_major(xq32, xd, xs, xsum, n_tiled // TOKENS, folded)
        bq, bd, bs, bsum = block_major(xq32, xd, xs, xsum, quads and n_tiled < n_tok)
        cbuf = aligned_empty(6 * TOKENS * 16, np.int32)  # tile dots' sums (tile_amx)
        # the tile rows of a pass, unpacked whole (n_codes 64-byte aligned words per row)
        row_codes, row_groups, k_bytes = tile_row_words(qtype)
        n_codes = n_blocks * row_codes if tiles else 0
        per_pass = max(1, min(ROWS_PER_PASS, PASS_BYTES // max(1, 4 * n_codes)))
        codes_flat = aligned_empty(per_pass * n_codes, np.int32)
        codes_rows = codes_flat.reshape((per_pass, n_codes))
        groups_rows = np.empty((per_pass, n_blocks * row_groups if tiles else 0), np.int32)
        floats_rows = np.empty((per_pass, n_blocks * 32 if tiles else 0), np.float32)
        fbuf = np.empty(TOKENS * 32, np.float32)  # tokens' sums (tile_amx, Q4_K)
        if tiles:
            config_tiles(rows_config(k_bytes))
        for t0 in range(first, first + count, per_pass):
            n_rows = min(per_pass, first + count - t0)
            for k in range(n_rows if tiles else 0):
                for b in range(n_blocks):
                    tile_unpack(qtype, isa, quants, scales, halves, (t0 + k) * n_blocks + b, 0,
                                codes_rows[k, b * row_codes:], groups_rows[k, b * row_groups:],
                                floats_rows[k, b * 32:])  # fmt: skip
                tile_row_finish(qtype, isa, codes_rows[k], groups_rows[k])
            for g in range(n_tiled // TOKENS):  # each group's activations once per pass
                for k in range(n_rows):
                    tile_rows_tiles(qtype, isa, codes_rows[k], groups_rows[k], floats_rows[k],
                                    gq[g], gd[g], gs[g], gsum[g], cbuf, fbuf, out, g * TOKENS,
                                    (t0 + k) * 16)  # fmt: skip
            for t in range(t0, t0 + n_rows):  # the tokens past the last whole group
                if n_tiled == n_tok:
                    break
                acc[:] = 0
                for lane0 in range(0, 16, step):
                    for b in range(n_blocks):
                        tb = t * n_blocks + b
                        tile_unpack(qtype, isa, quants, scales, halves, tb, lane0, codes_buf,
                                    groups_buf, floats_buf)  # fmt: skip
                        tok = n_tiled
                        while quads and tok + QUAD <= n_tok:
                            tile_dot_unpacked_quad(qtype, isa, codes_buf, groups_buf,
                                                   floats_buf, bq[b], bd[b], bs[b], bsum[b], acc,
                                                   tok)  # fmt: skip
                            tok += QUAD
                        while pairs and tok + 2 <= n_tok:  # two tokens per pass over the codes
                            xa = (xq32[tok], xd[tok], xs[tok], xsum[tok])
                            xb = (xq32[tok + 1], xd[tok + 1], xs[tok + 1], xsum[tok + 1])
                            fa, fb = tile_dot_unpacked_pair(
                                qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xa, xb,
                                load_f32(isa, acc[tok], lane0),
                                load_f32(isa, acc[tok + 1], lane0),
                            )  # fmt: skip
                            store_f32(acc[tok], lane0, fa)
                            store_f32(acc[tok + 1], lane0, fb)
                            tok += 2
                        while tok < n_tok:  # types without a pair shape, and an odd last token
                            facc = acc_load(qtype, isa, acc[tok], lane0)
                            if gemm_singles and tok < n_gemm:
                                facc = tile_dot_unpacked_gemm(qtype, isa, codes_buf,
                                                              groups_buf, floats_buf, lane0, b,
                                                              xq32[tok], xd[tok], xs[tok],
                                                              xsum[tok], facc)  # fmt: skip
                            else:
                                facc = tile_dot_unpacked(qtype, isa, codes_buf, groups_buf,
                                                         floats_buf, lane0, b, xq32[tok], xd[tok],
                                                         xs[tok], xsum[tok], facc)  # fmt: skip
                            acc_store(qtype, acc[tok], lane0, facc)
                            tok += 1
                for tok in range(n_tiled, n_tok):
                    for lane0 in range(0, 16, step):
                        total = acc_row_total(qtype, isa, acc[tok], lane0)
                        store_f32(out[tok], t * 16 + lane0, total)
        if tiles:
            release_tiles()

    return task


ONE_TOKEN, HALVES, BATCH = one_token_task, halves_task, batch_task  # block_task's `run`
_XS_DTYPE = dict.fromkeys((int(T.Q5_0), int(T.Q8_0)), np.int32)  # quantize_input's xs: word
# sums for these, else float32
N_ARGV = 17  # run_block_tiles' argument block (addresses and sizes), read by block_task


N_QUANTIZE_ARGV = 11  # quantize_task's argument block
QUANTIZE_SHARED_FROM = 16  # tokens from which the threads share the activations' quantizing


def _quantize_task(args, dims, steps, data):
    """A task function quantizing its share of the tokens of x into arrays run_block_tiles
    allocated, the format's code first in the argument block (one function for every
    format). As ggml's threads do: at 512 x 4096 the 256-block format takes 2.6 ms on one
    thread, a tenth of a Q4_K prompt matmul."""
    first, count = task_range(args, dims)
    a = carray(pointer(data, np.int64), N_QUANTIZE_ARGV)
    fmt, n_tok, n_in = a[0], a[1], a[2]
    x = carray(pointer(a[3], np.float32), (n_tok, n_in))
    xq = carray(pointer(a[4], np.int8), (n_tok, n_in))
    xd = carray(pointer(a[5], np.float32), (n_tok, a[6]))
    xsum = carray(pointer(a[9], np.int32), (n_tok, a[10]))
    end = first + count
    if fmt in (Q5_0_WORDS, Q8_0_WORDS):
        xs_words = carray(pointer(a[7], np.int32), (n_tok, a[8]))
        if fmt == Q5_0_WORDS:
            quantize_rows_q5_0_words(x, xq, xd, xs_words, xsum, first, end)
        else:
            quantize_rows_q8_0_words(x, xq, xd, xs_words, xsum, first, end)
    else:
        xs = carray(pointer(a[7], np.float32), (n_tok, a[8]))
        if fmt == Q8_K:
            quantize_rows_q8_k(x, xq, xd, xs, xsum, first, end)
        else:
            quantize_rows_q8(x, xq, xd, xs, xsum, first, end)


@functools.cache
def quantize_task() -> int:
    """The address of _quantize_task, compiled (or loaded) on first use, not at import."""
    return cfunc(TASK_SIG, cache=True)(_quantize_task).address


@njit(cache=True)
def run_block_tiles(task, quantizer, input_format, n_tiles, quants, scales, halves, x, out):
    """out[:, :16 * n_tiles] = x @ W.T for the tiled rows of W (the fused kernel): quantize x
    as input_format says (a static quantize_activations.INPUT_FORMAT token; on the pool with
    the task function at `quantizer`, quantize_task(), from QUANTIZE_SHARED_FROM
    tokens), then run the task function `task` (block_task's address) over the tiles on the
    pool."""
    n_tok, n_in = x.shape
    xq, xd, xs, xsum = input_arrays(input_format, n_tok, n_in)
    if n_tok >= QUANTIZE_SHARED_FROM:  # (not on the decode path: no argument block there)
        qargv = np.empty(N_QUANTIZE_ARGV, np.int64)
        qargv[0], qargv[1], qargv[2] = format_code(input_format), n_tok, n_in
        qargv[3], qargv[4] = x.ctypes.data, xq.ctypes.data
        qargv[5], qargv[6] = xd.ctypes.data, xd.shape[1]
        qargv[7], qargv[8] = xs.ctypes.data, xs.shape[1]
        qargv[9], qargv[10] = xsum.ctypes.data, xsum.shape[1]
        parallel_for(quantizer, n_tok, qargv.ctypes.data)
        keep_alive((qargv,))
    else:
        quantize_rows(input_format, x, xq, xd, xs, xsum, 0, n_tok)
    argv = np.empty(N_ARGV, np.int64)
    argv[0], argv[1] = quants.ctypes.data, quants.size
    argv[2], argv[3] = scales.ctypes.data, scales.size
    argv[4], argv[5] = halves.ctypes.data, halves.size
    argv[6], argv[7] = xq.ctypes.data, xd.ctypes.data
    argv[8], argv[9] = xs.ctypes.data, xs.shape[1]
    argv[10], argv[11] = xsum.ctypes.data, xsum.shape[1]
    argv[12], argv[13] = out.ctypes.data, out.shape[1]
    argv[14], argv[15], argv[16] = n_tok, n_in, xd.shape[1]
    parallel_for(task, n_tiles, argv.ctypes.data)
    keep_alive((x, xq, xd, xs, xsum, argv))


@functools.cache
def block_task(run, isa, qtype) -> int:
    """The address of the task function `run` (ONE_TOKEN, HALVES, BATCH) makes for static
    tokens isa and qtype, to pass to run_block_tiles; compiled (or loaded) once."""
    start_pool()  # before the launcher that runs it compiles or loads
    return run(isa, qtype, _XS_DTYPE.get(qtype.value, np.float32)).address


@njit(cache=True)
def linear_tail(qtype, tail, x, out):
    """out[:, n_out - len(tail):] for the rows past the last tile, kept as file blocks.

    A separate kernel so that it compiles only for matrices that have such rows."""
    xq, xd, xs, xsum = quantize_input(qtype, x)
    first = out.shape[1] - tail.shape[0]
    for r in range(tail.shape[0]):
        for tok in range(x.shape[0]):
            out[tok, first + r] = dot_row(qtype, tail[r], xq[tok], xd[tok], xs[tok], xsum[tok])


@inline
def load_lanes(isa, kind, w, i):
    """N weights (one per row) at flat index i of a float tile array, as F32xN."""
    if kind == FLOAT_F32:
        return load_f32(isa, w, i)
    return load_bf16(isa, w, i)


@inline
def round_input(kind, x):
    """x rounded to bf16 for BF16 weights (ggml converts activations so)."""
    if kind == FLOAT_F32:
        return x
    xr = np.empty_like(x)
    for t in range(x.shape[0]):
        for k in range(x.shape[1]):
            v = x[t, k]
            if v != v:  # NaN stays NaN
                xr[t, k] = v
            else:  # bf16: round to nearest even on the top 16 bits
                bits = f32_to_bits(v)
                bits = (
                    bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
                ) >> np.uint32(16)
                xr[t, k] = bf16_to_f32(np.uint16(bits))
    return xr


FLOAT_TOKEN_BLOCK = 6  # tokens per pass in prefill: 6 accumulators + weights fit 16 ymm


@inline
def float_dot_6(isa, kind, tiles, base, xr, tok, n_in):
    """Tokens tok .. tok + 5 against N tile rows: each weight vector loaded (and widened)
    once for six tokens, one accumulator per token."""
    a0, a1, a2 = zeros_f32(isa), zeros_f32(isa), zeros_f32(isa)
    a3, a4, a5 = zeros_f32(isa), zeros_f32(isa), zeros_f32(isa)
    for k in range(n_in):
        w = load_lanes(isa, kind, tiles, base + k * 16)
        a0 = fma(w, splat_f32(isa, xr[tok, k]), a0)
        a1 = fma(w, splat_f32(isa, xr[tok + 1, k]), a1)
        a2 = fma(w, splat_f32(isa, xr[tok + 2, k]), a2)
        a3 = fma(w, splat_f32(isa, xr[tok + 3, k]), a3)
        a4 = fma(w, splat_f32(isa, xr[tok + 4, k]), a4)
        a5 = fma(w, splat_f32(isa, xr[tok + 5, k]), a5)
    return a0, a1, a2, a3, a4, a5


def float_task(isa, kind, tile_dtype):
    """linear_float's task function for the static isa token and kind, tiles of tile_dtype:
    tiles first .. first + count - 1."""

    @cfunc(TASK_SIG, cache=True)
    def task(args, dims, steps, data):
        first, count = task_range(args, dims)
        a = carray(pointer(data, np.int64), 7)
        n_tok, n_in, n_out = a[4], a[5], a[6]
        tiles = carray(pointer(a[0], tile_dtype), a[1])
        xr = carray(pointer(a[2], np.float32), (n_tok, n_in))
        out = carray(pointer(a[3], np.float32), (n_tok, n_out))
        step = lanes(isa)
        for t in range(first, first + count):
            for lane0 in range(0, 16, step):
                base = t * n_in * 16 + lane0
                tok = 0
                while tok + FLOAT_TOKEN_BLOCK <= n_tok:  # prefill
                    a0, a1, a2, a3, a4, a5 = float_dot_6(isa, kind, tiles, base, xr, tok, n_in)
                    store_f32(out[tok], t * 16 + lane0, a0)
                    store_f32(out[tok + 1], t * 16 + lane0, a1)
                    store_f32(out[tok + 2], t * 16 + lane0, a2)
                    store_f32(out[tok + 3], t * 16 + lane0, a3)
                    store_f32(out[tok + 4], t * 16 + lane0, a4)
                    store_f32(out[tok + 5], t * 16 + lane0, a5)
                    tok += FLOAT_TOKEN_BLOCK
                while tok < n_tok:
                    xt = xr[tok]
                    # four independent accumulators hide the FMA latency
                    a0, a1, a2, a3 = zeros_f32(isa), zeros_f32(isa), zeros_f32(isa), zeros_f32(isa)
                    k = 0
                    while k + 4 <= n_in:
                        i = base + k * 16
                        a0 = fma(load_lanes(isa, kind, tiles, i), splat_f32(isa, xt[k]), a0)
                        a1 = fma(
                            load_lanes(isa, kind, tiles, i + 16), splat_f32(isa, xt[k + 1]), a1
                        )
                        a2 = fma(
                            load_lanes(isa, kind, tiles, i + 32), splat_f32(isa, xt[k + 2]), a2
                        )
                        a3 = fma(
                            load_lanes(isa, kind, tiles, i + 48), splat_f32(isa, xt[k + 3]), a3
                        )
                        k += 4
                    while k < n_in:
                        a0 = fma(
                            load_lanes(isa, kind, tiles, base + k * 16), splat_f32(isa, xt[k]), a0
                        )
                        k += 1
                    store_f32(out[tok], t * 16 + lane0, (a0 + a1) + (a2 + a3))
                    tok += 1

    return task


@functools.cache
def float_tile_task(isa, kind: int) -> int:
    """The address of float_task for the static isa token and kind (FLOAT_F32, FLOAT_BF16)."""
    start_pool()  # before the launcher that runs it compiles or loads
    return float_task(isa, kind, np.float32 if kind == FLOAT_F32 else np.uint16).address


@njit(cache=True)
def linear_float(task, kind, tiles, tail, x, out):
    """out = x @ W.T for F32 / BF16 W; task: float_tile_task(isa, kind)."""
    n_tok, n_in = x.shape
    n_tail = tail.shape[0]
    n_tiles = (out.shape[1] - n_tail) // 16
    xr = round_input(kind, x)
    argv = np.empty(7, np.int64)
    argv[0], argv[1], argv[2], argv[3] = (
        tiles.ctypes.data,
        tiles.size,
        xr.ctypes.data,
        out.ctypes.data,
    )
    argv[4], argv[5], argv[6] = n_tok, n_in, out.shape[1]
    parallel_for(task, n_tiles, argv.ctypes.data)
    keep_alive((xr, argv))
    for r in range(n_tail):
        for tok in range(n_tok):
            out[tok, n_tiles * 16 + r] = dot_float_row(kind, tail[r], xr[tok])
