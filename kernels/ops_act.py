"""Element-wise activations of the feed-forward block and row softmax.

Gated units take the gate and up projections as two (n, n_ff) arrays (often two column views
of one fused projection output) and write act(gate) * up.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .ops_f16 import f16_to_f32, f32_to_f16
from .ops_math import expf, fma32

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_COEF_A = 0.044715


@njit(cache=True, inline="always")
def _round_f16(x):
    return f16_to_f32(f32_to_f16(x))


@njit(cache=True)
def swiglu(gate, up, out):
    """out = silu(gate) * up, silu(g) = g / (1 + exp(-g)). All (n, n_ff) float32.

    exp is ggml's expf, so SiLU rounds as llama.cpp's vectorized one does (bit for bit;
    without fast-math, which may turn the division into a reciprocal and a multiply).
    """
    for i in range(gate.shape[0]):
        for j in range(gate.shape[1]):
            g = gate[i, j]
            out[i, j] = (g / (np.float32(1.0) + expf(np.float32(0.0) - g))) * up[i, j]


@njit(cache=True, inline="always")
def gelu_tanh(g):
    """GELU's tanh approximation of one float32 value, rounded as ggml's ggml_gelu_f32 is on
    x86-64: float32 throughout, libm's tanhf, and GCC's contraction of 1 + a*g*g into an FMA.
    No fast-math: it would reassociate the products."""
    c = np.float32(SQRT_2_OVER_PI)
    a = np.float32(GELU_COEF_A)
    inner = c * g * fma32(a * g, g, np.float32(1.0))
    return np.float32(0.5) * g * (np.float32(1.0) + math.tanh(inner))


@njit(cache=True)
def geglu(gate, up, out):
    """out = gelu_tanh(gate) * up (Gemma). All (n, n_ff) float32.

    As ggml computes it (its f16 GELU table): for -10 < g < 10 the GELU of g rounded to f16,
    itself rounded to f16; 0 below; g itself above. Bit-identical to llama.cpp's.
    """
    for i in range(gate.shape[0]):
        for j in range(gate.shape[1]):
            g = gate[i, j]
            if g <= -10.0:
                gelu = np.float32(0.0)
            elif g >= 10.0:
                gelu = g
            else:
                gelu = _round_f16(gelu_tanh(_round_f16(g)))
            out[i, j] = gelu * up[i, j]


@njit(cache=True, fastmath=True)
def softmax_rows(x):
    """Numerically stable softmax of every row of x (n, m), in place."""
    for i in range(x.shape[0]):
        row = x[i]
        peak = row[0]
        for j in range(1, row.shape[0]):
            peak = max(peak, row[j])
        total = np.float32(0.0)
        for j in range(row.shape[0]):
            e = np.exp(row[j] - peak)
            row[j] = e
            total += e
        inv = np.float32(1.0) / total
        for j in range(row.shape[0]):
            row[j] *= inv


@njit(cache=True, fastmath=True)
def softcap(x, cap):
    """x = cap * tanh(x / cap) in place, for a 2-D x; Gemma-2 style logit capping."""
    inv = np.float32(1.0) / cap
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] = cap * np.tanh(x[i, j] * inv)
