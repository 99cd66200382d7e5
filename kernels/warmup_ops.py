"""Compile (or load from the cache) the float kernels with the argument types the runtime
passes them, so a first generation does not pay Numba's compile time."""

from __future__ import annotations

import time

import numpy as np

from .attention import (
    _attention_parallel,
    _attention_serial,
    _prepare_parallel,
    _prepare_serial,
    score_scratch,
)
from .attention_prompt import attention_prompt
from .ggml_sums import V8
from .ops_act import geglu, swiglu
from .ops_norm import add_rmsnorm, postnorm_add_rmsnorm, rmsnorm
from .ops_rope import rope_tables


def warm_float_ops() -> float:
    """Run every float kernel once on tiny arrays typed as the architectures type them
    (projection outputs are column views, buffers contiguous); returns the seconds taken."""
    t0 = time.perf_counter()
    n, dim, n_head, n_kv, hd, n_ff, n_ctx = 2, 64, 4, 2, 16, 32, 8
    eps = 1e-6  # a Python float, as ModelArgs holds it
    f32 = np.float32
    x = np.ones((n, dim), f32)  # (n, dim)
    xn = np.empty_like(x)
    w = np.ones(dim, f32)
    rmsnorm(x, w, eps, xn)
    proj = np.ones((n, dim), f32)
    add_rmsnorm(x, proj[:, :dim], w, eps, xn)
    postnorm_add_rmsnorm(x, proj[:, :dim], w, w, eps, xn)

    gu = np.zeros((n, 2 * n_ff), f32)  # fused gate/up output; the kernels see column views
    ff = np.empty((n, n_ff), f32)
    swiglu(gu[:, :n_ff], gu[:, n_ff:], ff)
    geglu(gu[:, :n_ff], gu[:, n_ff:], ff)

    qkv = np.zeros((n, (n_head + 2 * n_kv) * hd), f32)
    q, k, v = qkv[:, : n_head * hd], qkv[:, n_head * hd : -n_kv * hd], qkv[:, -n_kv * hd :]
    cos, sin = rope_tables(n_ctx, hd, 10000.0)
    positions = np.arange(n, dtype=np.int32)
    k_cache = np.zeros((n_kv, n_ctx, hd), np.uint16)
    v_cache = np.zeros_like(k_cache)
    q_out = np.empty((n, n_head, hd), f32)
    norm = np.ones(hd, f32)
    out = np.empty((n, n_head * hd), f32)
    scores = score_scratch(n_ctx)
    for neox, use_qk_norm in ((False, False), (True, True)):  # llama, gemma3
        for prepare in (_prepare_serial, _prepare_parallel):
            prepare(q, k, v, positions, cos, sin, neox, norm, norm, use_qk_norm, eps, f32(1.0),
                    q_out, k_cache, v_cache)  # fmt: skip
    for attend in (_attention_serial, _attention_parallel):  # one token (decode)
        attend(V8, q_out[:1], k_cache, v_cache, positions[:1], 0, f32(0.25), f32(0.0), out[:1],
               scores)  # fmt: skip
    attention_prompt(q_out, k_cache, v_cache, positions, 0, f32(0.25), f32(0.0), out, scores)
    return time.perf_counter() - t0
