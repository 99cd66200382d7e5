"""Matrix kernels over 16-row tiles, multi-threaded over tiles (one prange per call).

    matmul_tiles(isa, qtype, n_tiles, qs, sc, dh, n_blocks, xq, xd, xs, xsum, out)
        out (n_tok, >= 16 * n_tiles) float32; row t*16 + lane of tile t. Activations are
        per token: xq int32 (n_tok, n_in/4), xd, xs, xsum as tile_dots describes.
    matmul_float_tiles(kind, n_tiles, w, x, out)
        F32 / F16 / BF16 tiles w, flat (n_tiles, n_in, 16) float32 or uint16 bits; x (n_tok, n_in).

Each token's pass over a tile's row of blocks re-reads that row from cache, not from memory:
the weights stream from DRAM once per call whatever the number of tokens.
"""

from __future__ import annotations

from numba import njit, prange

from .simd import (
    fma,
    load_bf16x16,
    load_f16x16,
    load_f32x16,
    splat_f32,
    store_f32x16,
    zeros_f32x16,
)
from .tile_dots import tile_dot

FLOAT_F32, FLOAT_F16, FLOAT_BF16 = 0, 1, 2


@njit(cache=True, parallel=True)
def matmul_tiles(isa, qtype, n_tiles, qs, sc, dh, n_blocks, xq, xd, xs, xsum, out):
    for t in prange(n_tiles):
        for tok in range(xq.shape[0]):
            x_q, x_d, x_s, x_sum = xq[tok], xd[tok], xs[tok], xsum[tok]
            facc = zeros_f32x16()
            for b in range(n_blocks):
                tb = t * n_blocks + b
                facc = tile_dot(isa, qtype, qs, sc, dh, tb, b, x_q, x_d, x_s, x_sum, facc)
            store_f32x16(out[tok], t * 16, facc)


@njit(inline="always")
def load_lanes(kind, w, i):
    """16 weights (one per row) at flat index i of a float tile array, as F32x16."""
    if kind == FLOAT_F32:
        return load_f32x16(w, i)
    if kind == FLOAT_F16:
        return load_f16x16(w, i)
    return load_bf16x16(w, i)


@njit(cache=True, parallel=True)
def matmul_float_tiles(kind, n_tiles, w, x, out):
    n_in = x.shape[1]
    for t in prange(n_tiles):
        base = t * n_in * 16
        for tok in range(x.shape[0]):
            xt = x[tok]
            # four independent accumulators hide the FMA latency
            a0, a1, a2, a3 = zeros_f32x16(), zeros_f32x16(), zeros_f32x16(), zeros_f32x16()
            k = 0
            while k + 4 <= n_in:
                a0 = fma(load_lanes(kind, w, base + k * 16), splat_f32(xt[k]), a0)
                a1 = fma(load_lanes(kind, w, base + k * 16 + 16), splat_f32(xt[k + 1]), a1)
                a2 = fma(load_lanes(kind, w, base + k * 16 + 32), splat_f32(xt[k + 2]), a2)
                a3 = fma(load_lanes(kind, w, base + k * 16 + 48), splat_f32(xt[k + 3]), a3)
                k += 4
            while k < n_in:
                a0 = fma(load_lanes(kind, w, base + k * 16), splat_f32(xt[k]), a0)
                k += 1
            store_f32x16(out[tok], t * 16, (a0 + a1) + (a2 + a3))
