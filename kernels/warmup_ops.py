"""Compile (or load from the cache) the float kernels with the argument types the runtime
passes them, so a first generation does not pay Numba's compile time.

The kernels come in groups that share no compiled code (FLOAT_OP_GROUPS), so that warmup's
worker processes can compile them side by side."""

from __future__ import annotations

import time

import numpy as np

from .attention import _attention_parallel, _attention_serial, prepare_qkv, score_scratch
from .attention_prompt import attention_prompt
from .ggml_sums import V8
from .ops_act import geglu, softcap, swiglu
from .ops_norm import add_rmsnorm, postnorm_add_rmsnorm, rmsnorm
from .ops_rope import rope_tables

# tiny shapes; arrays typed as the architectures type them (projection outputs are column
# views, buffers contiguous)
N, DIM, N_HEAD, N_KV, HEAD_DIM, N_FF, N_CTX = 2, 64, 4, 2, 16, 32, 8
EPS = 1e-6  # a Python float, as ModelArgs holds it
f32 = np.float32


def _weight(n: int) -> np.ndarray:
    """A norm weight as the engine holds them: read-only (archs.base.norm_weight)."""
    w = np.ones(n, f32)
    w.flags.writeable = False
    return w


def _attention_arrays():
    qkv = np.zeros((N, (N_HEAD + 2 * N_KV) * HEAD_DIM), f32)  # fused projection output
    q, k, v = (qkv[:, : N_HEAD * HEAD_DIM], qkv[:, N_HEAD * HEAD_DIM : -N_KV * HEAD_DIM],
               qkv[:, -N_KV * HEAD_DIM :])  # fmt: skip
    k_cache = np.zeros((N_KV, N_CTX, HEAD_DIM), np.uint16)
    return {
        "q": q, "k": k, "v": v, "k_cache": k_cache, "v_cache": np.zeros_like(k_cache),
        "positions": np.arange(N, dtype=np.int32),
        "q_out": np.zeros((N, N_HEAD, HEAD_DIM), f32),
        "out": np.empty((N, N_HEAD * HEAD_DIM), f32),
        "scores": score_scratch(N_CTX),
    }  # fmt: skip


def warm_norms() -> None:
    """RMS norms and the gated activations."""
    x = np.ones((N, DIM), f32)  # (n, dim)
    xn = np.empty_like(x)
    w = _weight(DIM)
    proj = np.ones((N, DIM), f32)
    rmsnorm(x, w, EPS, xn)
    add_rmsnorm(x, proj[:, :DIM], w, EPS, xn)
    postnorm_add_rmsnorm(x, proj[:, :DIM], w, w, EPS, xn)
    gu = np.zeros((N, 2 * N_FF), f32)  # gate and up packed together: column views of one
    ff = np.empty((N, N_FF), f32)  # output; else (weights of two types, one token) whole
    for gate, up in ((gu[:, :N_FF], gu[:, N_FF:]), (ff.copy(), ff.copy())):
        swiglu(gate, up, ff)
        geglu(gate, up, ff)
    softcap(ff, f32(30.0))  # Gemma's final logit cap, where a file sets one


def warm_prepare() -> None:
    """QK-norm, rope and the KV cache writes: llama's and gemma3's, with q, k and v as the
    projections give them (views of one output where their weights share a type and are
    packed together, else contiguous arrays, as are one token's)."""
    a = _attention_arrays()
    cos, sin = rope_tables(N_CTX, HEAD_DIM, 10000.0)
    norm = _weight(HEAD_DIM)
    q, k, v = a["q"], a["k"], a["v"]
    whole = q.copy(), k.copy(), v.copy()
    packings = ((q, k, v), (q, k, whole[2]), (whole[0], k, v), whole)  # qkv, qk v, q kv, q k v
    for q, k, v in packings:
        prepare_qkv(q, k, v, a["positions"], cos, sin, True, norm, norm, True, EPS, f32(1.0),
                    a["q_out"], a["k_cache"], a["v_cache"])  # fmt: skip


def warm_decode_attention() -> None:
    """Attention of one token (decode), on one thread and on all."""
    a = _attention_arrays()
    for attend in (_attention_serial, _attention_parallel):
        attend(V8, a["q_out"][:1], a["k_cache"], a["v_cache"], a["positions"][:1], 0, f32(0.25),
               f32(0.0), a["out"][:1], a["scores"])  # fmt: skip


def warm_prompt_attention() -> None:
    """Attention of a prompt batch (matrix products)."""
    a = _attention_arrays()
    attention_prompt(a["q_out"], a["k_cache"], a["v_cache"], a["positions"], 0, f32(0.25),
                     f32(0.0), a["out"], a["scores"])  # fmt: skip


# name -> warm function, the slowest to compile first (seconds cold, one process: prompt
# attention 7, prepare 6, decode attention 5, norms 2)
FLOAT_OP_GROUPS = {
    "prompt-attention": warm_prompt_attention,
    "prepare": warm_prepare,
    "decode-attention": warm_decode_attention,
    "norms": warm_norms,
}


def warm_float_ops() -> float:
    """Run every float kernel once on tiny arrays; returns the seconds taken."""
    t0 = time.perf_counter()
    for warm in FLOAT_OP_GROUPS.values():
        warm()
    return time.perf_counter() - t0
