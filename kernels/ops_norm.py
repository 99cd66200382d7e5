"""RMS normalisation over the rows of a (n_tokens, dim) activation, alone or fused with the
residual add that precedes it (one compiled call instead of two per use).

out = x / sqrt(mean(x²) + eps) * weight, the sum of squares in float64 as ggml does. The
weight is used as stored: Gemma's converter already folded its "1 + weight" into the file.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, fastmath=True, inline="always")
def _rms_scale(row, eps):
    sum_sq = 0.0  # float64 accumulator
    for j in range(row.shape[0]):
        sum_sq += np.float64(row[j]) * row[j]
    return np.float32(1.0 / np.sqrt(sum_sq / row.shape[0] + eps))


@njit(cache=True, fastmath=True)
def rmsnorm(x, weight, eps, out):
    """out[i] = rmsnorm(x[i]) * weight for every row i. x, out: (n, dim); weight: (dim,)."""
    for i in range(x.shape[0]):
        scale = _rms_scale(x[i], eps)
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] * scale * weight[j]


@njit(cache=True, fastmath=True)
def add_rmsnorm(x, delta, weight, eps, out):
    """Residual step of a pre-norm block: x += delta (in place), then out = rmsnorm(x) * weight.

    x, delta, out: (n, dim); weight: (dim,).
    """
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] += delta[i, j]
        scale = _rms_scale(x[i], eps)
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] * scale * weight[j]


@njit(cache=True, fastmath=True)
def postnorm_add_rmsnorm(x, delta, post_weight, weight, eps, out):
    """Residual step of a sandwich-norm block (Gemma): x += rmsnorm(delta) * post_weight (in
    place), then out = rmsnorm(x) * weight.

    x, delta, out: (n, dim); post_weight, weight: (dim,).
    """
    for i in range(x.shape[0]):
        delta_scale = _rms_scale(delta[i], eps)
        for j in range(x.shape[1]):
            x[i, j] += delta[i, j] * delta_scale * post_weight[j]
        scale = _rms_scale(x[i], eps)
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] * scale * weight[j]
