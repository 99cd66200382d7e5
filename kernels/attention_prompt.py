"""Attention for a batch of tokens (prompt processing), as matrix products in tinyBLAS's order.

llama.cpp computes a batch's attention as two f16 matrix products, K·Q and V·softmax, which
its tinyBLAS sums in 8-lane FMA chains and then hsum8. Here the same sums are tiled: eight
chains at a time (eight cache cells for one query, or eight head dims for one output), and
ggml_sums.hsum8x8 reduces the eight together into one vector that is stored as it is.

Both products read float32 copies of the cache cells the batch needs, made once per call:
    kf  (n_kv_head, n_cells, head_dim)   keys, as the K·Q chains run along head_dim
    vt  (n_kv_head, head_dim, n_cells)   values transposed, as the V·softmax chains run along
                                         cells (llama.cpp keeps its V cache transposed)
Cell c holds position first + c, where first is the batch's lowest visible position rounded
down to 8: a chain's lane is its position mod 8, as in llama.cpp's cache from cell 0. Cells
outside what the batch may see are zeros, so their products add nothing.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .ggml_sums import V8, hsum8, hsum8x8
from .inline import inline
from .ops_f16 import f16_to_f32
from .ops_math import expf, expf_avx2_lanes
from .simd import fma, gt, load_f32, load_i32, lt, round_f16, store_f32, where, zeros_f32

LANE_INDEX = np.arange(8, dtype=np.int32)
TOKEN_BLOCK = 8  # tokens per work item: each key and value row read serves all of them


def scratch_floats(n_ctx: int) -> int:
    """Scratch floats per thread that attention_prompt needs for a context of n_ctx."""
    return TOKEN_BLOCK * (n_ctx + 16)


@inline
def _visible_from(p, window):
    return max(0, p - window + 1) if window > 0 else 0


@inline
def _visible_cells(p, window, first):
    """Cells [c_lo, c_hi) of the positions a token at position p sees."""
    return _visible_from(p, window) - first, p + 1 - first


@inline
def _cell_blocks(p, window, first):
    """The 8-aligned cell range [c_start, c_end) covering a token's visible cells."""
    c_lo, c_hi = _visible_cells(p, window, first)
    return c_lo - c_lo % 8, (c_hi + 7) // 8 * 8


@njit(cache=True)
def _softmax_row(isa, s, base, p, window, first, softcap):
    """Softmax of one token's scores s[base + c] over its visible cells, in place; the cells
    around them, to the 8-aligned ends, become 0. ggml sums the exponentials of each 8 cells
    in float (hsum8), those sums in float64; the weights are rounded to f16."""
    c_lo, c_hi = _visible_cells(p, window, first)
    c_start, c_end = _cell_blocks(p, window, first)
    lo, hi = base + c_lo, base + c_hi
    if softcap > 0:
        for c in range(lo, hi):
            s[c] = softcap * np.tanh(s[c] / softcap)
    peak = -np.inf
    for c in range(lo, hi):
        peak = max(peak, s[c])
    total = 0.0
    for c0 in range(base + c_start, base + c_end, 8):
        _exp_block(isa, s, c0, peak, lo, hi)
        total += np.float64(hsum8(load_f32(isa, s, c0)))
    inv_total = np.float32(1.0 / total)
    for c0 in range(base + c_start, base + c_end, 8):
        store_f32(s, c0, round_f16(load_f32(isa, s, c0) * inv_total))


@inline
def _balanced(u, n):
    """Token of work item u: 0, n-1, 1, n-2, ... A causal token's work grows with its position,
    and prange hands each thread one contiguous run of items: this way every run holds early
    and late tokens alike (in order, the first thread got a quarter of the work)."""
    return u // 2 if u % 2 == 0 else n - 1 - u // 2


@inline
def _exp_block(isa, s, c0, peak, c_lo, c_hi):
    """s[c0 : c0 + 8] = expf(s - peak) on cells c_lo .. c_hi - 1, 0 on the others: 8 lanes
    at once where expf_avx2_lanes takes them all, else one by one."""
    cell = load_i32(isa, LANE_INDEX, 0) + c0
    seen = gt(cell, c_lo - 1) & lt(cell, c_hi)
    zero = zeros_f32(isa)
    e, ok = expf_avx2_lanes(isa, where(seen, load_f32(isa, s, c0) - peak, zero))
    if ok:
        store_f32(s, c0, where(seen, e, zero))
        return
    for c in range(c0, c0 + 8):
        s[c] = expf(s[c] - peak) if c_lo <= c < c_hi else np.float32(0.0)


@njit(cache=True)
def _dot8(isa, a, a_base, a_step, b, b_base, n):
    """hsum8x8 of eight chains: chain i sums a[a_base + i*a_step + k] * b[b_base + k] over k
    in 0 .. n-1, 8 lanes at a time."""
    r0, r1, r2, r3 = zeros_f32(isa), zeros_f32(isa), zeros_f32(isa), zeros_f32(isa)
    r4, r5, r6, r7 = zeros_f32(isa), zeros_f32(isa), zeros_f32(isa), zeros_f32(isa)
    for k in range(0, n, 8):
        x = load_f32(isa, b, b_base + k)
        i = a_base + k
        r0 = fma(x, load_f32(isa, a, i), r0)
        r1 = fma(x, load_f32(isa, a, i + a_step), r1)
        r2 = fma(x, load_f32(isa, a, i + 2 * a_step), r2)
        r3 = fma(x, load_f32(isa, a, i + 3 * a_step), r3)
        r4 = fma(x, load_f32(isa, a, i + 4 * a_step), r4)
        r5 = fma(x, load_f32(isa, a, i + 5 * a_step), r5)
        r6 = fma(x, load_f32(isa, a, i + 6 * a_step), r6)
        r7 = fma(x, load_f32(isa, a, i + 7 * a_step), r7)
    return hsum8x8(r0, r1, r2, r3, r4, r5, r6, r7)


@njit(cache=True, parallel=True)
def attention_prompt(q, k_cache, v_cache, positions, window, scale, softcap, out, scores):
    """attention.attention for n > 1 tokens; the same arguments. Scores live in the scratch
    rows (one per thread, scratch_floats(n_ctx) floats at least)."""
    isa = V8
    n, n_head, head_dim = q.shape
    n_kv_head, rows, _ = k_cache.shape
    group = n_head // n_kv_head
    p_max, p_min = positions.max(), positions.min()
    lo_min = _visible_from(p_min, window)
    first = lo_min - lo_min % 8
    n_cells = (p_max + 1 - first + 7) // 8 * 8

    # float32 copies of the cells, zeros where the batch sees nothing
    kf = np.empty(n_kv_head * n_cells * head_dim, np.float32)  # (n_kv_head, n_cells, hd)
    vt = np.empty(n_kv_head * head_dim * n_cells, np.float32)  # (n_kv_head, hd, n_cells)
    n_chunks = n_cells // 8
    for item in prange(n_kv_head * n_chunks):
        kv = item // n_chunks
        for c in range((item % n_chunks) * 8, (item % n_chunks) * 8 + 8):
            pos = first + c
            seen = lo_min <= pos <= p_max
            row = pos % rows
            for d in range(head_dim):
                k = f16_to_f32(k_cache[kv, row, d]) if seen else np.float32(0.0)
                v = f16_to_f32(v_cache[kv, row, d]) if seen else np.float32(0.0)
                kf[(kv * n_cells + c) * head_dim + d] = k
                vt[(kv * head_dim + d) * n_cells + c] = v

    q_flat = q.reshape(n * n_head * head_dim)
    row_len = n_cells + 8  # scratch floats per token of a block
    if scores.shape[1] < TOKEN_BLOCK * row_len:
        raise ValueError("attention scratch too small for this context")
    n_blocks = (n + TOKEN_BLOCK - 1) // TOKEN_BLOCK
    for item in prange(n_blocks * n_head):
        block = _balanced(item // n_head, n_blocks)
        h = item % n_head
        kv = h // group
        t0, t1 = block * TOKEN_BLOCK, min(n, block * TOKEN_BLOCK + TOKEN_BLOCK)
        s = scores[numba.get_thread_id()]  # token t's scores from (t - t0) * row_len
        u_start, u_end = n_cells, 0  # the cell blocks any token of the block sees
        for t in range(t0, t1):
            c_start, c_end = _cell_blocks(positions[t], window, first)
            u_start, u_end = min(u_start, c_start), max(u_end, c_end)

        # K·Q: eight cells per hsum8x8, scaled; each 8 keys serve the block's tokens
        for c0 in range(u_start, u_end, 8):
            for t in range(t0, t1):
                c_start, c_end = _cell_blocks(positions[t], window, first)
                if c_start <= c0 < c_end:
                    dots = _dot8(isa, kf, (kv * n_cells + c0) * head_dim, head_dim, q_flat,
                                 (t * n_head + h) * head_dim, head_dim)  # fmt: skip
                    store_f32(s, (t - t0) * row_len + c0, dots * scale)

        for t in range(t0, t1):
            _softmax_row(isa, s, (t - t0) * row_len, positions[t], window, first, softcap)

        # V·softmax: eight head dims per hsum8x8, chains along the cells
        for d0 in range(0, head_dim, 8):
            v_base = (kv * head_dim + d0) * n_cells
            for t in range(t0, t1):
                c_start, c_end = _cell_blocks(positions[t], window, first)
                r = _dot8(isa, vt, v_base + c_start, n_cells, s, (t - t0) * row_len + c_start,
                          c_end - c_start)  # fmt: skip
                store_f32(out[t], h * head_dim + d0, r)
