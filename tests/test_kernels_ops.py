"""Float kernels (norms, rope, activations, f16, attention) against plain numpy references."""

from __future__ import annotations

import ctypes
import ctypes.util

import numba
import numpy as np
import pytest

from llamba.kernels.attention import (
    _attention_parallel,
    _attention_serial,
    attention,
    prepare_qkv,
    score_scratch,
)
from llamba.kernels.ggml_sums import V8
from llamba.kernels.ops_act import geglu, softcap, softmax_rows, swiglu
from llamba.kernels.ops_f16 import f16_to_f32, f32_to_f16, from_f16_bits, to_f16_bits
from llamba.kernels.ops_norm import add_rmsnorm, postnorm_add_rmsnorm, rmsnorm
from llamba.kernels.ops_rope import rope, rope_tables

RNG = np.random.default_rng(1234)


def randn(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# ---- numpy references -------------------------------------------------------------------


def ref_rmsnorm(x, w, eps):
    x64 = x.astype(np.float64)
    return (x64 / np.sqrt((x64**2).mean(-1, keepdims=True) + eps) * w).astype(np.float32)


def ref_rope(x, positions, n_rot, base, neox):
    """x: (n, heads, head_dim); the textbook rotation in float64."""
    x = x.astype(np.float64).copy()
    half = n_rot // 2
    inv_freq = base ** (-np.arange(half) * 2.0 / n_rot)
    theta = positions[:, None].astype(np.float64) * inv_freq  # (n, half)
    cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    if neox:
        a, b = x[..., :half].copy(), x[..., half:n_rot].copy()
        x[..., :half] = a * cos - b * sin
        x[..., half:n_rot] = a * sin + b * cos
    else:
        a, b = x[..., 0:n_rot:2].copy(), x[..., 1:n_rot:2].copy()
        x[..., 0:n_rot:2] = a * cos - b * sin
        x[..., 1:n_rot:2] = a * sin + b * cos
    return x


def ref_attention(q, k, v, positions, window, scale, cap):
    """q: (n, n_head, hd); k, v: (n_kv, n_ctx, hd) float; the masked softmax per head, its
    weights rounded to f16 as ggml rounds them for the f16 value product."""
    n, n_head, hd = q.shape
    group = n_head // k.shape[0]
    out = np.zeros((n, n_head, hd))
    for t in range(n):
        p = positions[t]
        keys = np.arange(k.shape[1])
        allowed = keys <= p
        if window:
            allowed &= p - keys < window
        for h in range(n_head):
            s = k[h // group].astype(np.float64) @ q[t, h].astype(np.float64) * scale
            if cap:
                s = cap * np.tanh(s / cap)
            s = np.where(allowed, s, -np.inf)
            w = np.exp(s - s.max())
            w = (w / w.sum()).astype(np.float16).astype(np.float64)
            out[t, h] = w @ v[h // group].astype(np.float64)
    return out.reshape(n, n_head * hd)


# ---- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [576, 640, 7])
def test_rmsnorm_variants(dim):
    x, delta, w, w2 = randn(5, dim), randn(5, dim), randn(dim), randn(dim)
    out = np.empty_like(x)
    rmsnorm(x, w, 1e-6, out)
    np.testing.assert_allclose(out, ref_rmsnorm(x, w, 1e-6), rtol=1e-5, atol=1e-5)

    xr = x.copy()
    add_rmsnorm(xr, delta, w, 1e-5, out)
    np.testing.assert_allclose(xr, x + delta, rtol=1e-6)
    np.testing.assert_allclose(out, ref_rmsnorm(x + delta, w, 1e-5), rtol=1e-5, atol=1e-5)

    xr = x.copy()
    postnorm_add_rmsnorm(xr, delta, w2, w, 1e-6, out)
    want_x = x + ref_rmsnorm(delta, w2, 1e-6)
    np.testing.assert_allclose(xr, want_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, ref_rmsnorm(want_x, w, 1e-6), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("neox", [False, True])
@pytest.mark.parametrize("head_dim,n_rot", [(64, 64), (256, 256), (96, 64)])
def test_rope(neox, head_dim, n_rot):
    """The rotation is the textbook one; ggml's float32 angles drift from exact ones by about
    1e-6 relative, so positions stay small here (test_rope_is_ggmls checks large ones)."""
    positions = np.array([0, 1, 7, 33], dtype=np.int32)
    x = randn(len(positions), 3, head_dim)
    cos, sin = rope_tables(64, n_rot, 10000.0)
    got = x.copy()
    rope(got, positions, cos, sin, neox)
    np.testing.assert_allclose(got, ref_rope(x, positions, n_rot, 10000.0, neox), atol=2e-5)


def libm_f32(name):
    lib = ctypes.CDLL(ctypes.util.find_library("m"))
    fn = getattr(lib, name)
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float] * (2 if name == "powf" else 1)
    return fn


def ref_ggml_rope_tables(n_pos, n_rot, base, freq_scale, factors):
    """ggml_rope_cache_init in numpy float32 with the C library's powf, cosf and sinf."""
    cosf, sinf = libm_f32("cosf"), libm_f32("sinf")
    theta_scale = np.float32(libm_f32("powf")(base, np.float32(-2.0) / np.float32(n_rot)))
    cos, sin = np.empty((n_pos, n_rot // 2), np.float32), np.empty((n_pos, n_rot // 2), np.float32)
    for p in range(n_pos):
        theta = np.float32(p)
        for i in range(n_rot // 2):
            angle = np.float32(freq_scale) * (theta / np.float32(factors[i]))
            cos[p, i], sin[p, i] = cosf(angle), sinf(angle)
            theta = theta * theta_scale
    return cos, sin


def fma_f32(a, b, c):
    """a * b + c rounded once to float32 (the product is exact in long double)."""
    return (np.longdouble(a) * np.longdouble(b) + np.longdouble(c)).astype(np.float32)


@pytest.mark.parametrize("neox", [False, True])
def test_rope_is_ggmls(neox):
    """Tables and rotation round exactly as llama.cpp's rope: float32 angles by a running
    product, the C library's cosf/sinf, and x0*cos - x1*sin, x0*sin + x1*cos each contracted
    into one FMA over the other product (as GCC builds ggml)."""
    n_pos, n_rot = 4096, 64
    factors = np.float32(1.0 + RNG.random(n_rot // 2))
    cos, sin = rope_tables(n_pos, n_rot, 500000.0, 0.5, factors)
    want_cos, want_sin = ref_ggml_rope_tables(n_pos, n_rot, 500000.0, 0.5, factors)
    np.testing.assert_array_equal(cos, want_cos)
    np.testing.assert_array_equal(sin, want_sin)
    positions = np.array([0, 3, 300, 4095], dtype=np.int32)
    x = randn(len(positions), 2, n_rot)
    got = x.copy()
    rope(got, positions, cos, sin, neox)
    c, s = cos[positions][:, None, :], sin[positions][:, None, :]
    i0, i1 = (
        (slice(0, n_rot // 2), slice(n_rot // 2, n_rot))
        if neox
        else (slice(0, n_rot, 2), slice(1, n_rot, 2))
    )
    a, b = x[..., i0], x[..., i1]
    np.testing.assert_array_equal(got[..., i0], fma_f32(a, c, -(b * s)))
    np.testing.assert_array_equal(got[..., i1], fma_f32(a, s, b * c))


def test_rope_tables_scaling():
    cos, sin = rope_tables(16, 8, 500000.0, freq_scale=0.25, freq_factors=np.arange(1, 5))
    theta = np.arange(16)[:, None] * 0.25 * 500000.0 ** (-np.arange(4) / 4) / np.arange(1, 5)
    np.testing.assert_allclose(cos, np.cos(theta), atol=1e-6)
    np.testing.assert_allclose(sin, np.sin(theta), atol=1e-6)
    with pytest.raises(ValueError):
        rope_tables(16, 7, 10000.0)


def test_gated_activations():
    gu = randn(3, 2 * 1536, scale=5.0)
    gate, up = gu[:, :1536], gu[:, 1536:]  # column views of one fused projection, as used
    out = np.empty((3, 1536), dtype=np.float32)
    g, u = gate.astype(np.float64), up.astype(np.float64)
    swiglu(gate, up, out)
    np.testing.assert_allclose(out, g / (1 + np.exp(-g)) * u, rtol=1e-5, atol=1e-5)
    geglu(gate, up, out)
    # ggml's GELU: of the f16-rounded input, rounded to f16; 0 / identity beyond +-10
    g16 = g.astype(np.float16).astype(np.float64)
    gelu = 0.5 * g16 * (1 + np.tanh(np.sqrt(2 / np.pi) * (g16 + 0.044715 * g16**3)))
    gelu = gelu.astype(np.float16).astype(np.float64)
    gelu = np.where(g <= -10, 0.0, np.where(g >= 10, g, gelu))
    np.testing.assert_allclose(out, gelu * u, rtol=1e-3, atol=1e-5)
    exact = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g**3)))
    np.testing.assert_allclose(out, exact * u, rtol=2e-3, atol=2e-3)


def test_softmax_and_softcap():
    x = randn(4, 1000, scale=20.0)
    got = x.copy()
    softmax_rows(got)
    e = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    got = x.copy()
    softcap(got, np.float32(30.0))
    np.testing.assert_allclose(got, 30 * np.tanh(x / 30.0), rtol=1e-5, atol=1e-5)


def test_f16_conversions_match_numpy():
    from numba import njit

    @njit
    def round_trip(x, bits, back):
        for i in range(x.shape[0]):
            bits[i] = f32_to_f16(x[i])
            back[i] = f16_to_f32(bits[i])

    x = np.concatenate(
        [randn(1000, scale=100.0), np.array([0, -0.0, 1e-7, 6e-8, 65504, 7e4, np.inf, -np.inf])]
    ).astype(np.float32)
    bits, back = np.empty(len(x), np.uint16), np.empty(len(x), np.float32)
    round_trip(x, bits, back)
    np.testing.assert_array_equal(bits, to_f16_bits(x))
    np.testing.assert_array_equal(back, from_f16_bits(bits))


@pytest.mark.parametrize(
    "n_head,n_kv_head,head_dim,window,cap,qk_norm,neox",
    [
        (9, 3, 64, 0, 0.0, False, False),  # SmolLM2's shape
        (4, 1, 256, 5, 0.0, True, True),  # Gemma-3-270M's shape, sliding window
        (6, 6, 32, 0, 50.0, False, True),  # no grouping, soft-capped scores
    ],
)
def test_prepare_and_attention(n_head, n_kv_head, head_dim, window, cap, qk_norm, neox):
    n_ctx, n_prev, n = 24, 9, 7  # a batch of 7 tokens after 9 cached ones
    eps, scale = 1e-6, head_dim**-0.5
    cos, sin = rope_tables(n_ctx, head_dim, 10000.0)
    k_cache = np.zeros((n_kv_head, n_ctx, head_dim), np.uint16)
    v_cache = np.zeros_like(k_cache)
    q_norm, k_norm = randn(head_dim), randn(head_dim)

    # fill the first n_prev rows as earlier calls would have
    k_prev, v_prev = randn(n_prev, n_kv_head * head_dim), randn(n_prev, n_kv_head * head_dim)
    q_prev = randn(n_prev, n_head * head_dim)
    q_out = np.empty((n_prev, n_head, head_dim), np.float32)
    pos_prev = np.arange(n_prev, dtype=np.int32)
    q_scale = np.float32(0.5)
    args = (cos, sin, neox, q_norm, k_norm, qk_norm, eps, q_scale)
    prepare_qkv(q_prev, k_prev, v_prev, pos_prev, *args, q_out, k_cache, v_cache)

    # the batch: q, k, v as column views of one fused projection output
    qkv = randn(n, (n_head + 2 * n_kv_head) * head_dim)
    q_dim, kv_dim = n_head * head_dim, n_kv_head * head_dim
    q, k, v = qkv[:, :q_dim], qkv[:, q_dim : q_dim + kv_dim], qkv[:, q_dim + kv_dim :]
    positions = np.arange(n_prev, n_prev + n, dtype=np.int32)
    q_out = np.empty((n, n_head, head_dim), np.float32)
    prepare_qkv(q, k, v, positions, *args, q_out, k_cache, v_cache)

    # reference for the prepared tensors
    def ref_prep(x, heads, w, pos):
        x = x.reshape(len(pos), heads, head_dim)
        if qk_norm:
            x = ref_rmsnorm(x, w, eps)
        return ref_rope(x, pos, head_dim, 10000.0, neox)

    want_q = ref_prep(q, n_head, q_norm, positions) * q_scale
    np.testing.assert_allclose(q_out, want_q, rtol=1e-3, atol=1e-3)  # Q rounded to f16
    np.testing.assert_array_equal(q_out, from_f16_bits(to_f16_bits(q_out)))
    all_k = ref_prep(np.concatenate([k_prev, k]), n_kv_head, k_norm, np.arange(n_prev + n))
    all_v = np.concatenate([v_prev, v]).reshape(-1, n_kv_head, head_dim)
    got_k = from_f16_bits(k_cache[:, : n_prev + n]).transpose(1, 0, 2)
    np.testing.assert_allclose(got_k, all_k, rtol=2e-3, atol=2e-3)  # f16 storage
    np.testing.assert_array_equal(v_cache[:, : n_prev + n].transpose(1, 0, 2), to_f16_bits(all_v))

    out = np.full((n, q_dim), np.nan, np.float32)
    attention(q_out, k_cache, v_cache, positions, window, scale, cap, out, score_scratch(n_ctx))
    want = ref_attention(
        q_out,
        from_f16_bits(k_cache),
        from_f16_bits(v_cache),
        positions,
        window,
        scale,
        cap,
    )
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)

    # the multi-threaded paths compute exactly what the single-threaded ones do
    scratch = score_scratch(n_ctx)
    both = [np.empty_like(out), np.empty_like(out)]
    last = slice(n - 1, n)  # one token: the decode path
    for run, dst in zip((_attention_serial, _attention_parallel), both, strict=True):
        run(V8, q_out[last], k_cache, v_cache, positions[last], window, scale, cap, dst[last],
            scratch)  # fmt: skip
    np.testing.assert_array_equal(both[0][last], both[1][last])
    threads = numba.get_num_threads()
    for n_threads, dst in zip((1, threads), both, strict=True):  # the prompt path
        numba.set_num_threads(n_threads)
        attention(q_out, k_cache, v_cache, positions, window, scale, cap, dst, scratch)
    numba.set_num_threads(threads)
    np.testing.assert_array_equal(both[0], both[1])


def hsum8(v):
    """ggml's hsum_float_8 (and tinyBLAS's hsum) over the last axis of 8."""
    return ((v[..., 0] + v[..., 4]) + (v[..., 2] + v[..., 6])) + (
        (v[..., 1] + v[..., 5]) + (v[..., 3] + v[..., 7])
    )


def hsum8_hadd(v):
    """GGML_F32x8_REDUCE's last steps: two _mm_hadd_ps after adding the halves."""
    return ((v[..., 0] + v[..., 4]) + (v[..., 1] + v[..., 5])) + (
        (v[..., 2] + v[..., 6]) + (v[..., 3] + v[..., 7])
    )


def ref_ggml_attention(q, keys, values, scale, batched):
    """One query row against cache cells 0 .. len(keys) - 1 as llama.cpp's CPU graph sums
    it: f16 matmuls by tinyBLAS (a batch of tokens: one 8-lane FMA chain) or by
    ggml_vec_dot_f16 (one token: four chains 32 apart), ggml_vec_soft_max_f32's sums of 8.
    q, keys, values: float32 holding f16 values; keys/values (cells, head_dim)."""
    f32 = np.float32
    n_cells, hd = keys.shape

    def dot(a, b):  # a (hd,), b (..., hd) -> (...)
        if batched:
            acc = np.zeros(b.shape[:-1] + (8,), f32)
            for i in range(0, hd, 8):
                acc = fma_f32(a[i : i + 8], b[..., i : i + 8], acc)
            return hsum8(acc)
        acc = np.zeros((4,) + b.shape[:-1] + (8,), f32)
        for i in range(0, hd, 32):
            for r in range(4):
                acc[r] = fma_f32(
                    a[i + 8 * r : i + 8 * r + 8], b[..., i + 8 * r : i + 8 * r + 8], acc[r]
                )
        return hsum8_hadd((acc[0] + acc[2]) + (acc[1] + acc[3]))

    x = dot(q, keys) * scale
    e = ref_ggml_expf(x - x.max())
    padded = np.zeros(-(-n_cells // 8) * 8, f32)
    padded[:n_cells] = e
    total = sum(np.float64(b) for b in hsum8(padded.reshape(-1, 8)))
    w = (e * f32(1.0 / total)).astype(np.float16).astype(f32)
    n_cls = 8 if batched else 32
    cls = np.zeros((n_cls, hd), f32)
    for j in range(n_cells):
        cls[j % n_cls] = fma_f32(values[j], w[j], cls[j % n_cls])
    if batched:
        return hsum8(cls.T)
    lanes = (cls[0:8] + cls[16:24]) + (cls[8:16] + cls[24:32])  # (8, hd)
    return hsum8_hadd(lanes.T)


def test_attention_sums_as_llama_cpp_does():
    """Bit for bit against ggml's summation orders: batches of 38 tokens (several token blocks)
    and of 3 (tinyBLAS), and a single token (vec_dot_f16) at a position past 32 so that every
    class of cells is used."""
    n_head, n_kv_head, hd, n_ctx = 2, 1, 64, 64
    k_cache = np.zeros((n_kv_head, n_ctx, hd), np.uint16)
    v_cache = np.zeros_like(k_cache)
    cos, sin = rope_tables(n_ctx, hd, 10000.0)
    scale = np.float32(hd**-0.5)
    scratch = score_scratch(n_ctx)
    one, zero = np.float32(1.0), np.float32(0.0)
    norm = np.ones(hd, np.float32)
    for start, n in ((0, 38), (38, 3), (41, 1)):
        positions = np.arange(start, start + n, dtype=np.int32)
        q, k, v = (
            randn(n, n_head * hd, scale=3.0),
            randn(n, n_kv_head * hd),
            randn(n, n_kv_head * hd),
        )
        q_out = np.empty((n, n_head, hd), np.float32)
        prepare_qkv(q, k, v, positions, cos, sin, False, norm, norm, False, 1e-6, one, q_out,
                    k_cache, v_cache)  # fmt: skip
        out = np.empty((n, n_head * hd), np.float32)
        attention(q_out, k_cache, v_cache, positions, 0, scale, zero, out, scratch)
        keys, values = from_f16_bits(k_cache[0]), from_f16_bits(v_cache[0])
        for t in range(n):
            p = positions[t]
            for h in range(n_head):
                want = ref_ggml_attention(q_out[t, h], keys[: p + 1], values[: p + 1], scale, n > 1)
                np.testing.assert_array_equal(out[t, h * hd : (h + 1) * hd], want)


def test_sliding_window_ring_cache_matches_a_full_cache():
    """A window-6 layer keeping only window + batch - 1 = 9 rows (a ring that wraps several
    times) gives the attention outputs of a cache holding every position."""
    n_head, n_kv_head, head_dim, window, batch, n_total = 4, 2, 32, 6, 4, 30
    cos, sin = rope_tables(n_total, head_dim, 10000.0)
    args = (cos, sin, True, np.ones(1, np.float32), np.ones(1, np.float32), False, 1e-6,
            np.float32(1.0))  # fmt: skip
    caches = {
        rows: (np.zeros((n_kv_head, rows, head_dim), np.uint16),
               np.zeros((n_kv_head, rows, head_dim), np.uint16))
        for rows in (window + batch - 1, n_total)
    }  # fmt: skip
    scratch = score_scratch(n_total)
    for start in range(0, n_total, batch):
        positions = np.arange(start, min(start + batch, n_total), dtype=np.int32)
        q = randn(len(positions), n_head * head_dim)
        kv = randn(len(positions), 2 * n_kv_head * head_dim)
        k, v = kv[:, : n_kv_head * head_dim], kv[:, n_kv_head * head_dim :]
        outs = []
        for k_cache, v_cache in caches.values():
            q_out = np.empty((len(positions), n_head, head_dim), np.float32)
            prepare_qkv(q, k, v, positions, *args, q_out, k_cache, v_cache)
            out = np.empty((len(positions), n_head * head_dim), np.float32)
            attention(q_out, k_cache, v_cache, positions, window, np.float32(0.2),
                      np.float32(0.0), out, scratch)  # fmt: skip
            outs.append(out)
        np.testing.assert_array_equal(outs[0], outs[1])


def ref_ggml_expf(x):
    """ggml's vectorized expf written out in numpy, its AVX2 variant (the one llamba follows
    on every host; ggml's AVX-512 build scales by 2**n in one step instead); each
    FMA is exact in float64 then rounded to float32 (the product of two float32 values fits a
    float64 exactly, and so do these sums)."""

    def h(s):
        return np.float32(float.fromhex(s))

    def fma(a, b, c):
        return (np.float64(a) * np.float64(b) + np.float64(c)).astype(np.float32)

    x = np.asarray(x, np.float32)
    shifter = h("0x1.8p23")
    n = (fma(x, h("0x1.715476p+0"), shifter) - shifter).astype(np.float32)
    b = fma(-n, h("0x1.7f7d1cp-20"), fma(-n, h("0x1.62e4p-1"), x))
    u = (b * b).astype(np.float32)
    poly = fma(fma(h("0x1.0e4020p-7"), b, h("0x1.573e2ep-5")), u,
               fma(h("0x1.555e66p-3"), b, h("0x1.fffdb6p-2")))  # fmt: skip
    with np.errstate(over="ignore"):
        # poly * 2**n + 2**n in one rounding; 2**n in two factors when |n| > 126
        j = fma(poly, u, (h("0x1.ffffecp-1") * b).astype(np.float32))
        n64 = n.astype(np.int64)
        small = np.abs(n64) <= 126
        k = np.ldexp(1.0, np.where(small, n64, 0))
        out = np.where(small, j.astype(np.float64) * k + k, 0.0).astype(np.float32)
        s1_exp = np.where(n64 <= 0, -125, 127)  # the two factors of 2**n: 2**s1_exp * s2
        s2 = np.ldexp(1.0, n64 - s1_exp)
        big = (j.astype(np.float64) * s2 + s2).astype(np.float32).astype(np.float64)
        big = (big * np.ldexp(1.0, s1_exp)).astype(np.float32)
        huge = np.where(n64 <= 0, 0.0, np.inf).astype(np.float32)
        out = np.where(small, out, np.where(np.abs(n64) > 192, huge, big))
        return out


def test_expf_is_ggmls_and_accurate():
    from numba import njit

    from llamba.kernels import ops_math

    expf = ops_math.expf

    def run_all(x, out):
        for i in range(x.shape[0]):
            out[i] = expf(x[i])

    run = njit(run_all)
    run_fast = njit(fastmath=True)(run_all)  # as the kernels call it: from fast-math loops
    x = RNG.uniform(-100.0, 88.0, 200_000).astype(np.float32)
    x = np.concatenate([x, np.float32([0.0, -0.0, 1.0, -87.5, 88.7, -95.0, -103.0, -150.0, 200.0])])
    got, got_fast = np.empty_like(x), np.empty_like(x)
    run(x, got)
    run_fast(x, got_fast)
    np.testing.assert_array_equal(got.view(np.uint32), ref_ggml_expf(x).view(np.uint32))
    np.testing.assert_array_equal(got_fast.view(np.uint32), got.view(np.uint32))
    normal = (x > -87) & (x < 88)
    exact = np.exp(x[normal].astype(np.float64))
    ulps = np.abs(got[normal] - exact) / np.spacing(exact.astype(np.float32))
    assert ulps.max() < 2.5  # ggml's bound: 1.45 ulp + 0.5 for rounding (measured 2.2)
    assert got[-2] == 0.0 and got[-1] == np.inf


def test_warm_float_ops_compiles_every_float_kernel():
    from llamba.kernels.warmup_ops import warm_float_ops

    assert warm_float_ops() >= 0.0
