"""Rotary position embedding: precomputed cos/sin tables and the in-place rotation.

Two pairings exist in GGUF files: "normal" (llama.cpp's LLAMA_ROPE_TYPE_NORM: dims 2i and
2i+1 rotate together; llama's converter permutes Q/K rows so this matches HF) and "neox"
(dims i and i + n_rot/2; Gemma, Qwen, ...). Dims at and beyond n_rot pass through unchanged.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def rope_tables(
    n_pos: int,
    n_rot: int,
    base: float,
    freq_scale: float = 1.0,
    freq_factors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of theta[p, i] = p * freq_scale * base**(-2i/n_rot) / freq_factors[i].

    Returns two float32 arrays of shape (n_pos, n_rot // 2); angles computed in float64.
    """
    if n_rot <= 0 or n_rot % 2:
        raise ValueError(f"rope dimension count must be a positive even number, got {n_rot}")
    inv_freq = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)  # (n_rot/2,)
    if freq_factors is not None:
        inv_freq = inv_freq / np.asarray(freq_factors, dtype=np.float64)[: n_rot // 2]
    theta = np.outer(np.arange(n_pos, dtype=np.float64) * freq_scale, inv_freq)
    return np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)


@njit(cache=True, inline="always")  # no fastmath: see attention.py
def rotate_head(vec, cos_row, sin_row, neox):
    """Rotate one head vector in place. vec: (head_dim,); cos_row, sin_row: (n_rot/2,)."""
    half = cos_row.shape[0]
    if neox:
        for i in range(half):
            a = vec[i]
            b = vec[i + half]
            vec[i] = a * cos_row[i] - b * sin_row[i]
            vec[i + half] = a * sin_row[i] + b * cos_row[i]
    else:
        for i in range(half):
            a = vec[2 * i]
            b = vec[2 * i + 1]
            vec[2 * i] = a * cos_row[i] - b * sin_row[i]
            vec[2 * i + 1] = a * sin_row[i] + b * cos_row[i]


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
