"""Activations to 8-bit blocks, once per call, as ggml's Q8_0 / Q8_1 / Q8_K do before vec_dot.

Two activation formats, each as separate arrays (quants apart from scales):
- 32-blocks (for Q4_0 … Q8_0 weights): xq int8 (n_tok, n_in), xd float32 (n_tok, n_in/32)
  holding the fp16-rounded scale, xs float32 (n_tok, n_in/32) = fp16(d * sum(q)) (Q8_1's s),
  xsum int32 (n_tok, n_in/32) = sum(q).
  Rounding as ggml's x86 quantize_row_q8_0/q8_1: d = amax/127, q = rint(x * 127/amax).
- 256-blocks (for k-quant weights): xq int8 (n_tok, n_in), xd float32 (n_tok, n_in/256),
  xsum int32 (n_tok, n_in/16) = sums of 16 quants (bsums), as quantize_row_q8_K_ref;
  xs is empty (n_tok, 0).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .scalar import f16_to_f32, f32_to_f16

f32 = np.float32


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
def quantize_row_q8_k(x, xq, xd, xsum):
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


@njit(cache=True, parallel=True)
def quantize_q8(x, xq, xd, xs, xsum):
    """Rows x (n_tok, n_in) to 32-blocks (see module doc)."""
    for t in prange(x.shape[0]):
        quantize_row_q8(x[t], xq[t], xd[t], xs[t], xsum[t])


@njit(cache=True, parallel=True)
def quantize_q8_k(x, xq, xd, xsum):
    """Rows x (n_tok, n_in) to 256-blocks (see module doc)."""
    for t in prange(x.shape[0]):
        quantize_row_q8_k(x[t], xq[t], xd[t], xsum[t])


class Activations(NamedTuple):
    xq: np.ndarray  # int8 (n_tok, n_in)
    xd: np.ndarray  # float32 (n_tok, n_in / block)
    xs: np.ndarray  # float32 (n_tok, n_in / 32) for 32-blocks, (n_tok, 0) for 256-blocks
    xsum: np.ndarray  # int32 (n_tok, n_in / 32) or (n_tok, n_in / 16) bsums


def quantize_activations(x: np.ndarray, k_quant: bool) -> Activations:
    """x (n_tok, n_in) float32 -> Activations in the 32-block or 256-block format."""
    n_tok, n_in = x.shape
    block = 256 if k_quant else 32
    xq = np.empty((n_tok, n_in), np.int8)
    xd = np.empty((n_tok, n_in // block), np.float32)
    if k_quant:
        xs = np.empty((n_tok, 0), np.float32)
        xsum = np.empty((n_tok, n_in // 16), np.int32)
        quantize_q8_k(x, xq, xd, xsum)
    else:
        xs = np.empty((n_tok, n_in // 32), np.float32)
        xsum = np.empty((n_tok, n_in // 32), np.int32)
        quantize_q8(x, xq, xd, xs, xsum)
    return Activations(xq, xd, xs, xsum)
