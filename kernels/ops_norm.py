"""RMS normalisation over the rows of a (n_tokens, dim) activation, alone or fused with the
residual add that precedes it (one compiled call instead of two per use).

out = x / sqrt(mean(x²) + eps) * weight, computed in ggml's order so results track
llama.cpp's: float32 squares summed in float64, then mean, scale = 1 / sqrtf(mean + eps) and
(x * scale) * weight in float32 — no fast-math, so the compiler keeps that order and the
result is bit-identical to ggml's (8-bit activation quantization downstream turns last-bit
differences into visible ones). The weight is used as stored: Gemma's converter already
folded its "1 + weight" into the file.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, forceinline=True)
def _rms_scale(row, eps):
    sum_sq = 0.0  # float64 accumulator of float32 squares
    for j in range(row.shape[0]):
        sum_sq += row[j] * row[j]
    mean = np.float32(sum_sq / row.shape[0])
    return np.float32(1.0) / np.sqrt(mean + np.float32(eps))


@njit(cache=True)
def rmsnorm(x, weight, eps, out):
    """out[i] = rmsnorm(x[i]) * weight for every row i. x, out: (n, dim); weight: (dim,)."""
    for i in range(x.shape[0]):
        scale = _rms_scale(x[i], eps)
        for j in range(x.shape[1]):
            out[i, j] = (x[i, j] * scale) * weight[j]


@njit(cache=True)
def add_rmsnorm(x, delta, weight, eps, out):
    """Residual step of a pre-norm block: x += delta (in place), then out = rmsnorm(x) * weight.

    x, delta, out: (n, dim); weight: (dim,).
    """
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] += delta[i, j]
        scale = _rms_scale(x[i], eps)
        for j in range(x.shape[1]):
            out[i, j] = (x[i, j] * scale) * weight[j]


@njit(cache=True)
def postnorm_add_rmsnorm(x, delta, post_weight, weight, eps, out):
    """Residual step of a sandwich-norm block (Gemma): x += rmsnorm(delta) * post_weight (in
    place), then out = rmsnorm(x) * weight.

    x, delta, out: (n, dim); post_weight, weight: (dim,).
    """
    for i in range(x.shape[0]):
        delta_scale = _rms_scale(delta[i], eps)
        for j in range(x.shape[1]):
            x[i, j] += (delta[i, j] * delta_scale) * post_weight[j]
        scale = _rms_scale(x[i], eps)
        for j in range(x.shape[1]):
            out[i, j] = (x[i, j] * scale) * weight[j]
