"""Rotary position embedding: precomputed cos/sin tables and the in-place rotation.

Two pairings exist in GGUF files: "normal" (llama.cpp's LLAMA_ROPE_TYPE_NORM: dims 2i and
2i+1 rotate together; llama's converter permutes Q/K rows so this matches HF) and "neox"
(dims i and i + n_rot/2; Gemma, Qwen, ...). Dims at and beyond n_rot pass through unchanged.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .ops_math import fma32


def rope_tables(
    n_pos: int,
    n_rot: int,
    base: float,
    freq_scale: float = 1.0,
    freq_factors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of theta[p, i] = freq_scale * (p * base**(-2i/n_rot)) / freq_factors[i].

    Returns two float32 arrays of shape (n_pos, n_rot // 2), computed as ggml's rope cache
    does, so that rotated Q and K match llama.cpp's to the bit: in float32, the angle of pair
    i + 1 is that of pair i times powf(base, -2/n_rot) (a running product, which drifts by
    about 1e-6 relative at the last pair), then the C library's cosf and sinf.
    """
    if n_rot <= 0 or n_rot % 2:
        raise ValueError(f"rope dimension count must be a positive even number, got {n_rot}")
    factors = np.ones(n_rot // 2, np.float32)
    if freq_factors is not None:
        factors[:] = np.asarray(freq_factors, dtype=np.float32)[: n_rot // 2]
    cos = np.empty((n_pos, n_rot // 2), np.float32)
    sin = np.empty((n_pos, n_rot // 2), np.float32)
    _ggml_rope_angles(np.float32(base), n_rot, np.float32(freq_scale), factors, cos, sin)
    return cos, sin


@njit(cache=True)
def _ggml_rope_angles(base, n_rot, freq_scale, factors, cos, sin):
    # float32 throughout; Numba's float32 pow, cos and sin call the C library's powf, cosf, sinf
    theta_scale = base ** (np.float32(-2.0) / np.float32(n_rot))
    for p in range(cos.shape[0]):
        theta = np.float32(p)
        for i in range(cos.shape[1]):
            angle = freq_scale * (theta / factors[i])
            cos[p, i] = math.cos(angle)
            sin[p, i] = math.sin(angle)
            theta = theta * theta_scale


@njit(cache=True, forceinline=True)  # no fastmath: see attention.py
def rotate_head(vec, cos_row, sin_row, neox):
    """Rotate one head vector in place. vec: (head_dim,); cos_row, sin_row: (n_rot/2,).

    Rounded as llama.cpp's build computes x0*cos - x1*sin and x0*sin + x1*cos: GCC
    contracts each into one FMA over the other product (measured bit-exact on every layer
    of SmolLM2; the plain two-rounding form differs in the last bit now and then)."""
    half = cos_row.shape[0]
    for i in range(half):
        i0, i1 = (i, i + half) if neox else (2 * i, 2 * i + 1)
        a = vec[i0]
        b = vec[i1]
        c = cos_row[i]
        s = sin_row[i]
        vec[i0] = fma32(a, c, -(b * s))
        vec[i1] = fma32(a, s, b * c)


@njit(cache=True)
def rope(x, positions, cos, sin, neox):
    """Rotate every head of every token in place.

    x: (n_tokens, n_heads, head_dim) float32; positions: (n_tokens,) ints;
    cos, sin: (n_pos, n_rot/2) tables from rope_tables.
    """
    for t in range(x.shape[0]):
        p = positions[t]
        for h in range(x.shape[1]):
            rotate_head(x[t, h], cos[p], sin[p], neox)
