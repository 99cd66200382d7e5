"""Self-attention over an f16 KV cache: two fused calls per layer (the second multi-threaded).

1. `prepare_qkv`: per-head RMS norm of Q and K (optional, Gemma's QK-norm), rotary embedding,
   and the K/V rows written into the cache as f16 — one call for all heads and tokens.
2. `attention`: for every (token, query head), scores against the cached keys its mask
   allows (causal, optionally a sliding window), softmax, weighted sum of cached values.
   Grouped-query heads: query head h reads KV head h // (n_head // n_kv_head). A prompt
   batch runs in attention_prompt.py, tiled as matrix products; a single token (decode) here,
   one (token, head) at a time.

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

from .any_layout import any_layout
from .attention_prompt import attention_prompt, scratch_floats
from .ggml_sums import V8, dot_f16_vec
from .inline import inline
from .ops_f16 import f16_to_f32, f32_to_f16
from .ops_math import expf
from .ops_rope import rotate_head
from .simd import fma, load_f16, load_f32, splat_f32, store_f32, zeros_f32

SCRATCH_ROWS = numba.config.NUMBA_NUM_THREADS  # one score row per possible worker thread
PARALLEL_MIN_WORK = 1 << 18  # multiply-adds below which attention runs on one thread


MAX_HEAD_DIM = 256
CLASS_SCRATCH = 32 * MAX_HEAD_DIM  # per thread: the value sums of 32 position classes


def score_scratch(n_ctx: int) -> np.ndarray:
    """Scratch for `attention`, allocated once per model: a row per thread of float32, enough
    for a prompt batch's scores (attention_prompt) and for a single token's scores followed
    by its per-class value sums (CLASS_SCRATCH floats at the end)."""
    n = max(n_ctx, scratch_floats(n_ctx))
    return np.empty((SCRATCH_ROWS, n + CLASS_SCRATCH), dtype=np.float32)


# The prepare path runs without fastmath: with it, LLVM may fuse the rotate-and-scale of Q
# into FMAs in one build and not another (a fresh parallel build and its cached copy were
# seen to differ by one f16 step), and these per-token ops gain nothing from it.
@njit(cache=True, forceinline=True)
def _rms_norm_head(vec, weight, eps):
    sum_sq = 0.0  # float64 sum of float32 squares, then float32 maths, as ggml's rms_norm
    for d in range(vec.shape[0]):
        sum_sq += vec[d] * vec[d]
    mean = np.float32(sum_sq / vec.shape[0])
    scale = np.float32(1.0) / np.sqrt(mean + np.float32(eps))
    for d in range(vec.shape[0]):
        vec[d] = vec[d] * scale * weight[d]


@njit(cache=True, forceinline=True)
def _round_f16(x):
    return f16_to_f32(f32_to_f16(x))


@njit(cache=True, forceinline=True)
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


@any_layout("q_out", "k_cache", "v_cache")
@njit(cache=True)
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
    One thread: for a 512-token prompt of SmolLM2 this takes 0.45 ms per layer against
    0.30 ms on two (under 1 % of the prefill), and a parallel build compiled in 3.7 s
    instead of 0.6 s. One compile serves every layout of q, k and v (fused projections or
    not; any_layout).
    """
    kh = np.empty(k_cache.shape[2], dtype=np.float32)  # (head_dim,) one key head at a time
    for t in range(q.shape[0]):
        _prepare_token(t, q, k, v, positions, cos, sin, neox, q_norm, k_norm, use_qk_norm,
                       eps, q_scale, q_out, k_cache, v_cache, kh)  # fmt: skip


@njit(cache=True)
def _attend(isa, item, q, k_cache, v_cache, positions, window, scale, softcap, out, s, cls):
    """One (token, query head) of a single-token call: scores into s, softmax, weighted sum
    of values into out. Sums run in llama.cpp's order for one token (ggml_sums): its f16
    matmuls then run ggml_vec_dot_f16."""
    n, n_head, head_dim = q.shape
    n_kv_head, rows, _ = k_cache.shape
    t = item // n_head
    h = item % n_head
    kv = h // (n_head // n_kv_head)
    p = positions[t]
    lo = max(0, p - window + 1) if window > 0 else 0
    qh = q[t, h]  # (head_dim,)
    span = p + 1 - lo

    # scores: q · k over head_dim, then scaled (and capped)
    peak = -np.inf
    for j in range(span):
        kr = k_cache[kv, (lo + j) % rows]  # (head_dim,)
        x = dot_f16_vec(isa, qh, kr, head_dim)
        x = x * scale
        if softcap > 0:
            x = softcap * np.tanh(x / softcap)
        s[j] = x
        peak = max(peak, x)

    # softmax weights rounded to f16; ggml sums the exponentials of each 8 cache cells in
    # float (hsum8), those sums in float64; masked cells add zeros
    for j in range(span):
        s[j] = expf(s[j] - peak)
    total = 0.0
    first = lo - lo % 8
    for c0 in range(first, p + 1, 8):
        e0, e1, e2, e3 = (
            _cell(s, lo, p, c0),
            _cell(s, lo, p, c0 + 1),
            _cell(s, lo, p, c0 + 2),
            _cell(s, lo, p, c0 + 3),
        )
        e4, e5, e6, e7 = (
            _cell(s, lo, p, c0 + 4),
            _cell(s, lo, p, c0 + 5),
            _cell(s, lo, p, c0 + 6),
            _cell(s, lo, p, c0 + 7),
        )
        total += np.float64(((e0 + e4) + (e2 + e6)) + ((e1 + e5) + (e3 + e7)))
    inv_total = np.float32(1.0 / total)
    for j in range(span):
        s[j] = _round_f16(s[j] * inv_total)

    # weighted sum of values: position j adds to the partial sum of its class (cache cell
    # j mod 32: vec_dot_f16's four 8-lane vectors), each one FMA chain in position order;
    # the classes are then added in ggml's tree
    n_cls = 32
    for i in range(0, n_cls * head_dim, 8):
        store_f32(cls, i, zeros_f32(isa))
    for j in range(span):
        w = s[j]
        if w == 0.0:  # adds exactly nothing to its chain
            continue
        c = (lo + j) % n_cls
        vr = v_cache[kv, (lo + j) % rows]
        wv = splat_f32(isa, w)
        for d in range(0, head_dim, 8):
            i = c * head_dim + d
            store_f32(cls, i, fma(load_f16(isa, vr, d), wv, load_f32(isa, cls, i)))
    o = out[t]
    for d in range(0, head_dim, 8):
        # lane l of vec_dot_f16's reduced accumulator, then GGML_F32x8_REDUCE's hadds
        store_f32(o, h * head_dim + d, _hsum8_hadd_classes(isa, cls, head_dim, d))


@inline
def _cell(s, lo, p, c):
    """The weight of cache cell c, or 0 outside lo .. p (a masked cell)."""
    return s[c - lo] if lo <= c <= p else np.float32(0.0)


@inline
def _class(isa, cls, head_dim, d, c):
    return load_f32(isa, cls, c * head_dim + d)


@inline
def _vec_lane(isa, cls, head_dim, d, lane_):
    """Lane `lane_` of vec_dot_f16's four accumulators (a holds class 8a + lane) reduced as
    (a0 + a2) + (a1 + a3)."""
    a0 = _class(isa, cls, head_dim, d, lane_)
    a1 = _class(isa, cls, head_dim, d, 8 + lane_)
    a2 = _class(isa, cls, head_dim, d, 16 + lane_)
    a3 = _class(isa, cls, head_dim, d, 24 + lane_)
    return (a0 + a2) + (a1 + a3)


@inline
def _hsum8_hadd_classes(isa, cls, head_dim, d):
    x0, x4 = _vec_lane(isa, cls, head_dim, d, 0), _vec_lane(isa, cls, head_dim, d, 4)
    x1, x5 = _vec_lane(isa, cls, head_dim, d, 1), _vec_lane(isa, cls, head_dim, d, 5)
    x2, x6 = _vec_lane(isa, cls, head_dim, d, 2), _vec_lane(isa, cls, head_dim, d, 6)
    x3, x7 = _vec_lane(isa, cls, head_dim, d, 3), _vec_lane(isa, cls, head_dim, d, 7)
    return ((x0 + x4) + (x1 + x5)) + ((x2 + x6) + (x3 + x7))


@njit(cache=True)
def _attention_serial(isa, q, k_cache, v_cache, positions, window, scale, softcap, out, scores):
    n_ctx = scores.shape[1] - CLASS_SCRATCH
    for item in range(q.shape[0] * q.shape[1]):
        row = scores[0]
        _attend(isa, item, q, k_cache, v_cache, positions, window, scale, softcap, out,
                row[:n_ctx], row[n_ctx:])  # fmt: skip


@njit(cache=True, parallel=True)
def _attention_parallel(isa, q, k_cache, v_cache, positions, window, scale, softcap, out,
                        scores):  # fmt: skip
    n_ctx = scores.shape[1] - CLASS_SCRATCH
    for item in prange(q.shape[0] * q.shape[1]):
        row = scores[numba.get_thread_id()]  # this thread's scores and class sums
        _attend(isa, item, q, k_cache, v_cache, positions, window, scale, softcap, out,
                row[:n_ctx], row[n_ctx:])  # fmt: skip


def attention(q, k_cache, v_cache, positions, window, scale, softcap, out, scores):
    """out[t, h] = softmax(scale * q[t, h] · K[lo:p+1]) @ V[lo:p+1] for every token and head.

    q: (n, n_head, head_dim) float32
    k_cache, v_cache: (n_kv_head, rows, head_dim) uint16 f16 bits (see the module note)
    positions: (n,) ints; window: sliding window in tokens, 0 for none
    scale: score multiplier (1/sqrt(head_dim) usually); softcap: 0, or cap * tanh(s / cap)
    out: (n, n_head * head_dim) float32
    scores: (threads, n_ctx) float32 scratch from score_scratch
    A single token's heads spread over threads only when there is enough work to pay for it.
    """
    n, n_head, head_dim = q.shape
    if head_dim % 8 or head_dim > MAX_HEAD_DIM:
        raise ValueError(f"attention needs a head size that is a multiple of 8 up to "
                         f"{MAX_HEAD_DIM}, got {head_dim}")  # fmt: skip
    if n > 1:  # a prompt batch: as llama.cpp's matrix products (attention_prompt)
        attention_prompt(q, k_cache, v_cache, positions, window, scale, softcap, out, scores)
        return
    span = int(positions[-1]) + 1
    if window > 0:
        span = min(span, window)
    parallel = n_head * span * head_dim >= PARALLEL_MIN_WORK
    run = _attention_parallel if parallel else _attention_serial
    run(V8, q, k_cache, v_cache, positions, window, scale, softcap, out, scores)
