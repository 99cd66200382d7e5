"""Element-wise activations of the feed-forward block and row softmax.

Gated units take the gate and up projections as two (n, n_ff) arrays (often two column views
of one fused projection output) and write act(gate) * up.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from .ggml_sums import V8
from .inline import inline
from .ops_f16 import f16_to_f32, f32_to_f16
from .ops_math import expf, expf_avx2_lanes, fma32
from .simd import load_f32, store_f32, zeros_f32

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_COEF_A = 0.044715


@njit(cache=True, forceinline=True)
def _round_f16(x):
    return f16_to_f32(f32_to_f16(x))


@njit(cache=True)
def swiglu(gate, up, out):
    """out = silu(gate) * up, silu(g) = g / (1 + exp(-g)). All (n, n_ff) float32.

    exp is ggml's expf, so SiLU rounds as llama.cpp's vectorized one does (bit for bit;
    without fast-math, which may turn the division into a reciprocal and a multiply). Eight
    values at a time (expf_avx2_lanes, the same operations per lane).
    """
    isa = V8
    n_ff = gate.shape[1]
    n_vec = n_ff - n_ff % 8
    for i in range(gate.shape[0]):
        g_row, u_row, o_row = gate[i], up[i], out[i]
        for j in range(0, n_vec, 8):
            g = load_f32(isa, g_row, j)
            e, ok = expf_avx2_lanes(isa, zeros_f32(isa) - g)
            if ok:
                store_f32(o_row, j, (g / (e + np.float32(1.0))) * load_f32(isa, u_row, j))
            else:
                for jj in range(j, j + 8):
                    o_row[jj] = _silu(g_row[jj]) * u_row[jj]
        for j in range(n_vec, n_ff):
            o_row[j] = _silu(g_row[j]) * u_row[j]


@inline
def _silu(g):
    return g / (np.float32(1.0) + expf(np.float32(0.0) - g))


@njit(cache=True, forceinline=True)
def gelu_tanh(g):
    """GELU's tanh approximation of one float32 value, rounded as ggml's ggml_gelu_f32 is on
    x86-64: float32 throughout, libm's tanhf, and GCC's contraction of 1 + a*g*g into an FMA.
    No fast-math: it would reassociate the products."""
    c = np.float32(SQRT_2_OVER_PI)
    a = np.float32(GELU_COEF_A)
    inner = c * g * fma32(a * g, g, np.float32(1.0))
    return np.float32(0.5) * g * (np.float32(1.0) + math.tanh(inner))


@njit(cache=True)
def _gelu_f16_table():
    """GELU of every f16 value (by its bits), rounded to f16: ggml's ggml_table_gelu_f16."""
    table = np.empty(1 << 16, np.float32)
    for bits in range(1 << 16):
        table[bits] = _round_f16(gelu_tanh(f16_to_f32(np.uint16(bits))))
    return table


@functools.cache
def gelu_f16_table() -> np.ndarray:
    return _gelu_f16_table()


def geglu(gate, up, out):
    """out = gelu_tanh(gate) * up (Gemma). All (n, n_ff) float32.

    As ggml computes it, from its f16 GELU table: for -10 < g < 10 the GELU of g rounded to
    f16, itself rounded to f16; 0 below; g itself above. Bit-identical to llama.cpp's.
    """
    _geglu(gate, up, out, gelu_f16_table())


@njit(cache=True)
def _geglu(gate, up, out, table):
    for i in range(gate.shape[0]):
        for j in range(gate.shape[1]):
            g = gate[i, j]
            if g <= -10.0:
                gelu = np.float32(0.0)
            elif g >= 10.0:
                gelu = g
            else:
                gelu = table[f32_to_f16(g)]
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
