"""F16 weights in row layout, summed as llama.cpp sums them, so F16 files give its logits.

    linear_f16(task, w, x, out)   task = f16_row_task(isa); w (n_out, n_in) uint16 f16 bits,
                                  x (n_tok, n_in) float32, out (n_tok, n_out) = x @ W.T
ggml rounds the activations to f16, then (ggml_sums.py): a single token goes through
ggml_vec_dot_f16 (four 8-lane FMA chains 32 weights apart), a batch of tokens through
tinyBLAS (one 8-lane chain per row and token, n_in a multiple of 8). Both run along a row,
so the weights stay in the file's row layout (the other types' kernels use 16-row tiles).
A prefill block is 4 rows x 3 tokens: twelve chains share seven loads.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import carray, cfunc, njit

from .ggml_sums import dot_f16_gemm, dot_f16_vec, hsum8
from .inline import inline
from .ops_f16 import f16_to_f32, f32_to_f16
from .simd import fma, load_f16, load_f32, zeros_f32
from .threads import TASK_SIG, keep_alive, parallel_for, pointer, start_pool, task_range

ROWS_PER_TASK = 32  # rows one thread takes at a time
TOKENS_PER_PASS = 33  # a batch's activations in chunks that stay in L2 while a task's rows pass


@inline
def _gemm_4x3(isa, xa, xb, xc, w, r, n, out, t):
    """tinyBLAS's chains for rows r .. r + 3 against tokens t .. t + 2 (twelve dot products;
    four weight and three activation loads feed twelve FMAs per step of 8)."""
    w0, w1, w2, w3 = w[r], w[r + 1], w[r + 2], w[r + 3]
    a0, a1, a2, a3 = zeros_f32(isa), zeros_f32(isa), zeros_f32(isa), zeros_f32(isa)
    b0, b1, b2, b3 = zeros_f32(isa), zeros_f32(isa), zeros_f32(isa), zeros_f32(isa)
    c0, c1, c2, c3 = zeros_f32(isa), zeros_f32(isa), zeros_f32(isa), zeros_f32(isa)
    for i in range(0, n, 8):
        ta, tb, tc = load_f32(isa, xa, i), load_f32(isa, xb, i), load_f32(isa, xc, i)
        v = load_f16(isa, w0, i)
        a0, b0, c0 = fma(v, ta, a0), fma(v, tb, b0), fma(v, tc, c0)
        v = load_f16(isa, w1, i)
        a1, b1, c1 = fma(v, ta, a1), fma(v, tb, b1), fma(v, tc, c1)
        v = load_f16(isa, w2, i)
        a2, b2, c2 = fma(v, ta, a2), fma(v, tb, b2), fma(v, tc, c2)
        v = load_f16(isa, w3, i)
        a3, b3, c3 = fma(v, ta, a3), fma(v, tb, b3), fma(v, tc, c3)
    out[t, r], out[t, r + 1], out[t, r + 2], out[t, r + 3] = (
        hsum8(a0),
        hsum8(a1),
        hsum8(a2),
        hsum8(a3),
    )
    out[t + 1, r], out[t + 1, r + 1] = hsum8(b0), hsum8(b1)
    out[t + 1, r + 2], out[t + 1, r + 3] = hsum8(b2), hsum8(b3)
    out[t + 2, r], out[t + 2, r + 1] = hsum8(c0), hsum8(c1)
    out[t + 2, r + 2], out[t + 2, r + 3] = hsum8(c2), hsum8(c3)


def f16_task(isa):
    """linear_f16's task function for the static isa token: row tasks first .. first +
    count - 1, ROWS_PER_TASK rows each."""

    @cfunc(TASK_SIG, cache=True)
    def task(args, dims, steps, data):
        first, count = task_range(args, dims)
        a = carray(pointer(data, np.int64), 6)
        n_tok, n_in, n_out = a[3], a[4], a[5]
        w = carray(pointer(a[0], np.uint16), (n_out, n_in))
        xr = carray(pointer(a[1], np.float32), (n_tok, n_in))
        out = carray(pointer(a[2], np.float32), (n_tok, n_out))
        batched = n_tok > 1 and n_in % 8 == 0
        for row_task in range(first, first + count):
            r0 = row_task * ROWS_PER_TASK
            r1 = min(r0 + ROWS_PER_TASK, n_out)
            if not batched:
                for r in range(r0, r1):
                    for t in range(n_tok):
                        out[t, r] = dot_f16_vec(isa, xr[t], w[r], n_in)
                continue
            for t0 in range(0, n_tok, TOKENS_PER_PASS):
                t1 = min(t0 + TOKENS_PER_PASS, n_tok)
                r = r0
                while r + 4 <= r1:
                    t = t0
                    while t + 3 <= t1:
                        _gemm_4x3(isa, xr[t], xr[t + 1], xr[t + 2], w, r, n_in, out, t)
                        t += 3
                    for tt in range(t, t1):  # the batch's last one or two tokens
                        for rr in range(r, r + 4):
                            out[tt, rr] = dot_f16_gemm(isa, xr[tt], w[rr], n_in)
                    r += 4
                for rr in range(r, r1):
                    for t in range(t0, t1):
                        out[t, rr] = dot_f16_gemm(isa, xr[t], w[rr], n_in)

    return task


@functools.cache
def f16_row_task(isa) -> int:
    """The address of f16_task for the static isa token."""
    start_pool()  # before the launcher that runs it compiles or loads
    return f16_task(isa).address


@njit(cache=True)
def linear_f16(task, w, x, out):
    """out = x @ W.T; task: f16_row_task(isa), w C-contiguous."""
    n_tok, n_in = x.shape
    xr = np.empty_like(x)  # activations rounded to f16, as ggml converts them
    for t in range(n_tok):
        for k in range(n_in):
            xr[t, k] = f16_to_f32(f32_to_f16(x[t, k]))
    argv = np.empty(6, np.int64)
    argv[0], argv[1], argv[2] = w.ctypes.data, xr.ctypes.data, out.ctypes.data
    argv[3], argv[4], argv[5] = n_tok, n_in, w.shape[0]
    parallel_for(task, (w.shape[0] + ROWS_PER_TASK - 1) // ROWS_PER_TASK, argv.ctypes.data)
    keep_alive((xr, argv))
