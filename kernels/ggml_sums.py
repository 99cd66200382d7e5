"""ggml's float summation orders on x86 (AVX2), for results identical to llama.cpp's.

A float sum's last bit depends on the order of its additions, and with 8-bit activations
downstream one flipped bit can move a logit by 1; so where llama.cpp's result is the
reference, its order is followed. All vectors here are 8 lanes (ggml's __m256):
    hsum8(v)        hsum_float_8 / tinyBLAS hsum: ((v0+v4) + (v2+v6)) + ((v1+v5) + (v3+v7))
    hsum8_hadd(v)   the two _mm_hadd_ps of GGML_F32x8_REDUCE: ((v0+v4) + (v1+v5)) + ((v2+v6)
                    + (v3+v7))
    dot_f16_gemm    a row pair of tinyBLAS's f16 matmul (prompt batches): one 8-lane FMA chain
    dot_f16_vec     ggml_vec_dot_f16 (single tokens): four 8-lane chains 32 apart, reduced
                    pairwise, the n % 32 tail added in float64
    hsum8x8(v0..v7) the hsum8 of eight vectors at once, lane i = hsum8(vi): a transpose
                    network of shuffles and adds that keeps hsum8's pairing in every lane
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.extending import intrinsic

from .inline import inline
from .ops_f16 import f16_to_f32
from .simd import F32, PORTABLE, fma, isa_variant, lane, load_f16, load_f32, prefetch, zeros_f32

V8 = isa_variant(PORTABLE, 8)  # plain 8-lane LLVM vectors: one ymm on AVX2


@inline
def hsum8(v):
    return ((lane(v, 0) + lane(v, 4)) + (lane(v, 2) + lane(v, 6))) + (
        (lane(v, 1) + lane(v, 5)) + (lane(v, 3) + lane(v, 7))
    )


@inline
def hsum8_hadd(v):
    return ((lane(v, 0) + lane(v, 4)) + (lane(v, 1) + lane(v, 5))) + (
        (lane(v, 2) + lane(v, 6)) + (lane(v, 3) + lane(v, 7))
    )


@inline
def dot_f16_gemm(isa, x, h, n):
    """x (float32, f16 values) · h (f16 bits), n a multiple of 8, as tinyBLAS sums it."""
    acc = zeros_f32(isa)
    for i in range(0, n, 8):
        acc = fma(load_f32(isa, x, i), load_f16(isa, h, i), acc)
    return hsum8(acc)


# how far ahead of the weights being summed dot_f16_vec prefetches them (f16 elements), into
# L2 (simd.prefetch): 2 KiB; rows are contiguous, so past a row's end this fetches the next
# row's start. Matvec 11008x4096 from DRAM: 73 % of the bandwidth without (the hardware
# prefetcher restarts at every 4 KiB page), 88-92 % at 2 and 4 KiB, 78-81 % at 1 KiB
F16_PREFETCH = 1024


@inline
def dot_f16_vec(isa, x, h, n):
    """x (float32, f16 values) · h (f16 bits), as ggml_vec_dot_f16 sums it."""
    a0, a1, a2, a3 = zeros_f32(isa), zeros_f32(isa), zeros_f32(isa), zeros_f32(isa)
    n32 = n - n % 32
    for i in range(0, n32, 32):
        prefetch(h, i + F16_PREFETCH)
        a0 = fma(load_f32(isa, x, i), load_f16(isa, h, i), a0)
        a1 = fma(load_f32(isa, x, i + 8), load_f16(isa, h, i + 8), a1)
        a2 = fma(load_f32(isa, x, i + 16), load_f16(isa, h, i + 16), a2)
        a3 = fma(load_f32(isa, x, i + 24), load_f16(isa, h, i + 24), a3)
    total = np.float64(hsum8_hadd((a0 + a2) + (a1 + a3)))
    for i in range(n32, n):
        total += np.float64(x[i] * f16_to_f32(h[i]))
    return np.float32(total)


def _pair_sums(builder, a, b, first, second):
    """Lane-wise sum of two shuffles of (a, b): lanes `first` plus lanes `second`."""
    mask = lambda lanes: ir.Constant(ir.VectorType(ir.IntType(32), 8), lanes)  # noqa: E731
    x = builder.shuffle_vector(a, b, mask(first))
    y = builder.shuffle_vector(a, b, mask(second))
    return builder.fadd(x, y)


@intrinsic
def hsum8x8(typingctx, v0, v1, v2, v3, v4, v5, v6, v7):
    """F32x8 whose lane i is hsum8(vi), for eight F32x8 vectors.

    Three rounds, each adding lanes that hsum8 adds, in its pairing:
      1. lane k + lane k+4 of each vector (two vectors per result);
      2. (0+4) + (2+6) and (1+5) + (3+7) (four vectors per result);
      3. the two halves' sums (all eight).
    The inputs enter as (v0, v4, v1, v5, v2, v6, v3, v7) so that the lanes come out in order.
    """
    vec = F32[8]
    args = (v0, v1, v2, v3, v4, v5, v6, v7)
    if any(a != vec for a in args):
        return None

    def codegen(context, builder, signature, values):
        a, b, c, d, e, f, g, h = (values[i] for i in (0, 4, 1, 5, 2, 6, 3, 7))
        lo, hi = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        ab, cd = _pair_sums(builder, a, b, lo, hi), _pair_sums(builder, c, d, lo, hi)
        ef, gh = _pair_sums(builder, e, f, lo, hi), _pair_sums(builder, g, h, lo, hi)
        first, second = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        abcd, efgh = (
            _pair_sums(builder, ab, cd, first, second),
            _pair_sums(builder, ef, gh, first, second),
        )
        return _pair_sums(
            builder, abcd, efgh, [0, 2, 8, 10, 4, 6, 12, 14], [1, 3, 9, 11, 5, 7, 13, 15]
        )

    return vec(*args), codegen
