"""Self-attention over an f16 KV cache: two fused, multi-threaded calls per layer.

1. `prepare_qkv`: per-head RMS norm of Q and K (optional, Gemma's QK-norm), rotary embedding,
   and the K/V rows written into the cache as f16 — one call for all heads and tokens.
2. `attention`: for every (token, query head), scores against the cached keys its mask
   allows (causal, optionally a sliding window), softmax, weighted sum of cached values.
   Grouped-query heads: query head h reads KV head h // (n_head // n_kv_head).

The key of the token at position p lives in cache row p % rows. A full-context layer has
rows >= n_ctx, so row = position; a sliding-window layer may keep a ring of only
rows >= window + n_batch - 1 rows, enough that a batch never overwrites a key that one of its
own tokens still needs. A token at position p attends to positions [lo, p], with
lo = max(0, p - window + 1) for a window, else 0.

Rounding follows ggml's (non-flash) attention, so results track llama.cpp's: Q is rounded to
f16 for the f16 K·Q products, and the softmax weights are rounded to f16 for the weighted sum
of f16 values; exponentials are ggml's expf (ops_math); sums of squares and of exponentials
are accumulated in float64.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .ops_f16 import f16_to_f32, f32_to_f16
from .ops_math import expf
from .ops_rope import rotate_head

SCRATCH_ROWS = numba.config.NUMBA_NUM_THREADS  # one score row per possible worker thread
PARALLEL_MIN_TOKENS = 4  # fewer tokens: prepare_qkv runs on the calling thread
PARALLEL_MIN_WORK = 1 << 18  # multiply-adds below which attention runs on one thread


def score_scratch(n_ctx: int) -> np.ndarray:
    """Scratch for `attention`: (threads, n_ctx) float32, allocated once per model."""
    return np.empty((SCRATCH_ROWS, n_ctx), dtype=np.float32)


# The prepare path runs without fastmath: with it, LLVM may fuse the rotate-and-scale of Q
# into FMAs in one build and not another (a fresh parallel build and its cached copy were
# seen to differ by one f16 step), and these per-token ops gain nothing from it.
@njit(cache=True, inline="always")
def _rms_norm_head(vec, weight, eps):
    sum_sq = 0.0  # float64 sum of float32 squares, then float32 maths, as ggml's rms_norm
    for d in range(vec.shape[0]):
        sum_sq += vec[d] * vec[d]
    mean = np.float32(sum_sq / vec.shape[0])
    scale = np.float32(1.0) / np.sqrt(mean + np.float32(eps))
    for d in range(vec.shape[0]):
        vec[d] = vec[d] * scale * weight[d]


@njit(cache=True, inline="always")
def _round_f16(x):
    return f16_to_f32(f32_to_f16(x))


@njit(cache=True, inline="always")
def _prepare_token(
    t, q, k, v, positions, cos, sin, neox, q_norm, k_norm, use_qk_norm, eps, q_scale,
    q_out, k_cache, v_cache, kh,
):  # fmt: skip
    n_head = q_out.shape[1]
    n_kv_head, rows, head_dim = k_cache.shape
    p = positions[t]
    row = p % rows
    for h in range(n_head):
        qh = q_out[t, h]  # (head_dim,)
        for d in range(head_dim):  # a loop, not a slice copy: that costs seconds to compile
            qh[d] = q[t, h * head_dim + d]
        if use_qk_norm:
            _rms_norm_head(qh, q_norm, eps)
        rotate_head(qh, cos[p], sin[p], neox)
        for d in range(head_dim):
            qh[d] = _round_f16(qh[d] * q_scale)
    for h in range(n_kv_head):
        for d in range(head_dim):
            kh[d] = k[t, h * head_dim + d]
        if use_qk_norm:
            _rms_norm_head(kh, k_norm, eps)
        rotate_head(kh, cos[p], sin[p], neox)
        for d in range(head_dim):
            k_cache[h, row, d] = f32_to_f16(kh[d])
            v_cache[h, row, d] = f32_to_f16(v[t, h * head_dim + d])


@njit(cache=True)
def _prepare_serial(
    q, k, v, positions, cos, sin, neox, q_norm, k_norm, use_qk_norm, eps, q_scale,
    q_out, k_cache, v_cache,
):  # fmt: skip
    kh = np.empty(k_cache.shape[2], dtype=np.float32)  # (head_dim,) one key head at a time
    for t in range(q.shape[0]):
        _prepare_token(t, q, k, v, positions, cos, sin, neox, q_norm, k_norm, use_qk_norm,
                       eps, q_scale, q_out, k_cache, v_cache, kh)  # fmt: skip


@njit(cache=True, parallel=True)
def _prepare_parallel(
    q, k, v, positions, cos, sin, neox, q_norm, k_norm, use_qk_norm, eps, q_scale,
    q_out, k_cache, v_cache,
):  # fmt: skip
    for t in prange(q.shape[0]):
        kh = np.empty(k_cache.shape[2], dtype=np.float32)  # (head_dim,)
        _prepare_token(t, q, k, v, positions, cos, sin, neox, q_norm, k_norm, use_qk_norm,
                       eps, q_scale, q_out, k_cache, v_cache, kh)  # fmt: skip


def prepare_qkv(
    q, k, v, positions, cos, sin, neox, q_norm, k_norm, use_qk_norm, eps, q_scale,
    q_out, k_cache, v_cache,
):  # fmt: skip
    """Norm, rotate, scale and round Q into q_out; norm, rotate and store K, store V.

    q: (n, n_head * head_dim); k, v: (n, n_kv_head * head_dim)  float32, any strides
    positions: (n,) ints; cache row = position % rows
    cos, sin: (n_pos, n_rot/2) rope tables; neox: pairing (see ops_rope)
    q_norm, k_norm: (head_dim,) QK-norm weights, read only when use_qk_norm
    q_scale: multiplies Q after rope (Gemma scales Q there; else 1)
    q_out: (n, n_head, head_dim) float32 holding f16-representable values
    k_cache, v_cache: (n_kv_head, rows, head_dim) uint16 (f16 bits) of this layer
    Tokens run on all threads only in prefill: a thread team costs more than one token.
    """
    run = _prepare_parallel if q.shape[0] >= PARALLEL_MIN_TOKENS else _prepare_serial
    run(q, k, v, positions, cos, sin, neox, q_norm, k_norm, use_qk_norm, eps, q_scale,
        q_out, k_cache, v_cache)  # fmt: skip


@njit(cache=True, fastmath=True, inline="always")
def _attend(item, q, k_cache, v_cache, positions, window, scale, softcap, out, s):
    """One (token, query head): scores into s, softmax, weighted sum of values into out."""
    n, n_head, head_dim = q.shape
    n_kv_head, rows, _ = k_cache.shape
    t = item // n_head
    h = item % n_head
    kv = h // (n_head // n_kv_head)
    p = positions[t]
    lo = max(0, p - window + 1) if window > 0 else 0
    qh = q[t, h]  # (head_dim,)

    # scores, four positions at a time (independent sums keep the FMA units busy)
    span = p + 1 - lo
    j = 0
    while j + 4 <= span:
        k0 = k_cache[kv, (lo + j) % rows]  # (head_dim,) each
        k1 = k_cache[kv, (lo + j + 1) % rows]
        k2 = k_cache[kv, (lo + j + 2) % rows]
        k3 = k_cache[kv, (lo + j + 3) % rows]
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for d in range(head_dim):
            qd = qh[d]
            a0 += f16_to_f32(k0[d]) * qd
            a1 += f16_to_f32(k1[d]) * qd
            a2 += f16_to_f32(k2[d]) * qd
            a3 += f16_to_f32(k3[d]) * qd
        s[j], s[j + 1], s[j + 2], s[j + 3] = a0, a1, a2, a3
        j += 4
    for jj in range(j, span):
        kr = k_cache[kv, (lo + jj) % rows]
        a0 = np.float32(0.0)
        for d in range(head_dim):
            a0 += f16_to_f32(kr[d]) * qh[d]
        s[jj] = a0
    peak = -np.inf
    for j in range(span):
        x = s[j] * scale
        if softcap > 0:
            x = softcap * np.tanh(x / softcap)
        s[j] = x
        peak = max(peak, x)

    # softmax weights, rounded to f16
    total = 0.0  # float64
    for j in range(span):
        e = expf(s[j] - peak)
        s[j] = e
        total += e
    inv_total = np.float32(1.0 / total)
    for j in range(span):
        s[j] = _round_f16(s[j] * inv_total)

    # weighted sum of values, four positions per pass over the output
    o = out[t, h * head_dim : (h + 1) * head_dim]  # (head_dim,)
    o[:] = 0.0
    j = 0
    while j + 4 <= span:
        v0 = v_cache[kv, (lo + j) % rows]  # (head_dim,) each
        v1 = v_cache[kv, (lo + j + 1) % rows]
        v2 = v_cache[kv, (lo + j + 2) % rows]
        v3 = v_cache[kv, (lo + j + 3) % rows]
        w0, w1, w2, w3 = s[j], s[j + 1], s[j + 2], s[j + 3]
        for d in range(head_dim):
            o[d] += (w0 * f16_to_f32(v0[d]) + w1 * f16_to_f32(v1[d])) + (
                w2 * f16_to_f32(v2[d]) + w3 * f16_to_f32(v3[d])
            )
        j += 4
    for jj in range(j, span):
        vr = v_cache[kv, (lo + jj) % rows]
        w = s[jj]
        for d in range(head_dim):
            o[d] += w * f16_to_f32(vr[d])


@njit(cache=True, fastmath=True)
def _attention_serial(q, k_cache, v_cache, positions, window, scale, softcap, out, scores):
    for item in range(q.shape[0] * q.shape[1]):
        _attend(item, q, k_cache, v_cache, positions, window, scale, softcap, out, scores[0])


@njit(cache=True, fastmath=True, parallel=True)
def _attention_parallel(q, k_cache, v_cache, positions, window, scale, softcap, out, scores):
    for item in prange(q.shape[0] * q.shape[1]):
        s = scores[numba.get_thread_id()]  # (n_ctx,) this thread's row
        _attend(item, q, k_cache, v_cache, positions, window, scale, softcap, out, s)


def attention(q, k_cache, v_cache, positions, window, scale, softcap, out, scores):
    """out[t, h] = softmax(scale * q[t, h] · K[lo:p+1]) @ V[lo:p+1] for every token and head.

    q: (n, n_head, head_dim) float32
    k_cache, v_cache: (n_kv_head, rows, head_dim) uint16 f16 bits (see the module note)
    positions: (n,) ints; window: sliding window in tokens, 0 for none
    scale: score multiplier (1/sqrt(head_dim) usually); softcap: 0, or cap * tanh(s / cap)
    out: (n, n_head * head_dim) float32
    scores: (threads, n_ctx) float32 scratch from score_scratch
    (token, head) pairs spread over threads only when there is enough work to pay for it.
    """
    n, n_head, head_dim = q.shape
    span = int(positions[-1]) + 1
    if window > 0:
        span = min(span, window)
    parallel = n * n_head * span * head_dim >= PARALLEL_MIN_WORK
    run = _attention_parallel if parallel else _attention_serial
    run(q, k_cache, v_cache, positions, window, scale, softcap, out, scores)
