"""Activations to 8-bit blocks, once per call, as ggml's Q8_0 / Q8_1 / Q8_K do before vec_dot.

Two activation formats, each as separate arrays (quants apart from scales):
- 32-blocks (for Q4_0 … Q8_0 weights): xq int8 (n_tok, n_in), xd float32 (n_tok, n_in/32)
  holding the fp16-rounded scale, xs float32 (n_tok, n_in/32) = fp16(d * sum(q)) (Q8_1's s),
  xsum int32 (n_tok, n_in/32) = sum(q). For Q5_0, xs holds the sums of every 4 codes
  instead (int32 (n_tok, n_in/4)).
  Rounding as ggml's x86 quantize_row_q8_0/q8_1: d = amax/127, q = rint(x * 127/amax).
- 256-blocks (for k-quant weights): xq int8 (n_tok, n_in), xd float32 (n_tok, n_in/256),
  xsum int32 (n_tok, n_in/16) = sums of 16 quants (bsums), as quantize_row_q8_K_ref;
  xs is empty (n_tok, 0).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import type_ids as T
from .scalar import f16_to_f32, f32_to_f16
from .static import static_dispatch

f32 = np.float32


@njit(cache=True)
def quantize_row_q8(x, xq, xd, xs, xsum):
    """One row x (n_in,) float32 to 32-blocks: xq (n_in,), xd, xs, xsum (n_in/32,)."""
    for b in range(x.size // 32):
        amax = f32(0.0)
        for j in range(32):
            amax = max(amax, abs(x[b * 32 + j]))
        d = amax / f32(127.0)
        inv = f32(127.0) / amax if amax != 0 else f32(0.0)
        total = 0
        for j in range(32):
            q = np.int32(np.rint(x[b * 32 + j] * inv))
            xq[b * 32 + j] = q
            total += q
        xd[b] = f16_to_f32(f32_to_f16(d))
        xs[b] = f16_to_f32(f32_to_f16(d * f32(total)))
        xsum[b] = total


@njit(cache=True)
def quantize_row_q8_k(x, xq, xd, xs, xsum):
    """One row x (n_in,) float32 to 256-blocks: xq (n_in,), xd (n_in/256,), xsum (n_in/16,)."""
    for b in range(x.size // 256):
        amax = f32(0.0)
        vmax = f32(0.0)  # the value of largest magnitude, with its sign
        for j in range(256):
            a = abs(x[b * 256 + j])
            if a > amax:
                amax = a
                vmax = x[b * 256 + j]
        if amax == 0:
            xd[b] = 0.0
            for j in range(256):
                xq[b * 256 + j] = 0
            for g in range(16):
                xsum[b * 16 + g] = 0
            continue
        iscale = f32(-127.0) / vmax
        for g in range(16):
            total = 0
            for j in range(16):
                k = b * 256 + g * 16 + j
                q = min(np.int32(np.rint(iscale * x[k])), 127)
                xq[k] = q
                total += q
            xsum[b * 16 + g] = total
        xd[b] = f32(1.0) / iscale


K_QUANTS = (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)
LEGACY = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0)


@njit(cache=True)
def quantize_input_q8(x):
    """x (n_tok, n_in) float32 -> xq, xd, xs, xsum in the 32-block format (module doc)."""
    n_tok, n_in = x.shape
    xq = np.empty((n_tok, n_in), np.int8)
    xd = np.empty((n_tok, n_in // 32), np.float32)
    xs = np.empty((n_tok, n_in // 32), np.float32)
    xsum = np.empty((n_tok, n_in // 32), np.int32)
    for t in range(n_tok):
        quantize_row_q8(x[t], xq[t], xd[t], xs[t], xsum[t])
    return xq, xd, xs, xsum


@njit(cache=True)
def quantize_input_q8_k(x):
    """x (n_tok, n_in) float32 -> xq, xd, xs (empty), xsum in the 256-block format."""
    n_tok, n_in = x.shape
    xq = np.empty((n_tok, n_in), np.int8)
    xd = np.empty((n_tok, n_in // 256), np.float32)
    xs = np.empty((n_tok, 0), np.float32)
    xsum = np.empty((n_tok, n_in // 16), np.int32)
    for t in range(n_tok):
        quantize_row_q8_k(x[t], xq[t], xd[t], xs[t], xsum[t])
    return xq, xd, xs, xsum


@njit(cache=True)
def quantize_input_q8_words(x):
    """As quantize_input_q8, but xs holds the sum of every word's 4 codes, int32 (n_tok,
    n_in/4): Q5_0's 8-lane shape subtracts its code offset per word with them, Q8_0's on
    AVX-512 the 128 its flipped codes add (tile_dots.legacy_exact_shape); neither uses the
    block sums' scale."""
    xq, xd, _, xsum = quantize_input_q8(x)
    xs = np.empty((x.shape[0], x.shape[1] // 4), np.int32)
    for t in range(x.shape[0]):
        for w in range(xs.shape[1]):
            xs[t, w] = (np.int32(xq[t, 4 * w]) + np.int32(xq[t, 4 * w + 1])
                        + np.int32(xq[t, 4 * w + 2]) + np.int32(xq[t, 4 * w + 3]))  # fmt: skip
    return xq, xd, xs, xsum


# quantize_input(qtype, x) -> (xq, xd, xs, xsum): x in the format weights of the static
# type qtype take (one compiled function per format, shared by the types)
quantize_input = static_dispatch(
    {
        **dict.fromkeys(K_QUANTS, quantize_input_q8_k),
        **dict.fromkeys(LEGACY, quantize_input_q8),
        T.Q5_0: quantize_input_q8_words,
        T.Q8_0: quantize_input_q8_words,
    },
    "quantize_input",
)

# a representative weight type per activation format: kernels that differ by format only
# (tiled.run_block_tiles) compile once per format, not once per weight type
INPUT_FORMAT = {**dict.fromkeys(K_QUANTS, T.Q4_K), **dict.fromkeys(LEGACY, T.Q4_0), T.Q5_0: T.Q5_0,
                T.Q8_0: T.Q5_0}  # fmt: skip
