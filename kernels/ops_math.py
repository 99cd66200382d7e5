"""Scalar maths for Numba kernels that vectorizes: fused multiply-add and ggml's expf.

Numba calls the C library's expf one value at a time; this exp is plain arithmetic and FMAs,
so LLVM turns a loop of it into vector code. It is compiled without fast-math (and not
inlined at the Numba level) so no caller's fast-math flags reorder its steps. It is the algorithm ggml uses for softmax and
SiLU on x86 (ggml_v_expf, "adapted from arm limited optimized routine", max error 1.45 ulp +
0.5 ulp), so results also round as llama.cpp's do.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .inline import inline
from .simd import bits_f32, float_bits, fma, gt, lane, splat_f32, vabs

f32 = np.float32


@intrinsic
def fma32(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma.f32)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f = ir.FloatType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f, [f, f, f]),
                                            "llvm.fma.f32")  # fmt: skip
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float32, as int32."""
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _from_bits(typingctx, b):
    """The float32 whose IEEE bits are the int32 b."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


SHIFTER = f32(float.fromhex("0x1.8p23"))
INV_LN2 = f32(float.fromhex("0x1.715476p+0"))
LN2_HI = f32(float.fromhex("0x1.62e4p-1"))
LN2_LO = f32(float.fromhex("0x1.7f7d1cp-20"))
C1 = f32(float.fromhex("0x1.0e4020p-7"))
C2 = f32(float.fromhex("0x1.573e2ep-5"))
C3 = f32(float.fromhex("0x1.555e66p-3"))
C4 = f32(float.fromhex("0x1.fffdb6p-2"))
C5 = f32(float.fromhex("0x1.ffffecp-1"))
ONE_BITS = 0x3F800000
NEG_BIAS = 0x82000000


@njit(cache=True)
def expf_avx2(x):
    """exp(x) for a float32 x, as ggml_v_expf computes it on AVX2 (and NEON): the polynomial
    without its constant term, then j * 2**n + 2**n in one FMA."""
    z = fma32(x, INV_LN2, SHIFTER)
    n = z - SHIFTER  # round(x / ln 2)
    b = fma32(-n, LN2_LO, fma32(-n, LN2_HI, x))  # x - n ln 2
    u = b * b
    j = fma32(fma32(fma32(C1, b, C2), u, fma32(C3, b, C4)), u, C5 * b)  # exp(b) - 1
    e = np.int64(_bits(z)) << 23  # n in the exponent field (the shifter's low bits hold n)
    if abs(n) <= f32(126.0):
        k = _from_bits(np.int32(e + ONE_BITS))  # 2**n
        return fma32(j, k, k)
    # large |n|: 2**n as two factors s2 * s1, so that the result may under- or overflow once
    g = np.int64(NEG_BIAS) if n <= f32(0.0) else np.int64(0)
    s1 = _from_bits(np.int32((g + 0x7F000000) & 0xFFFFFFFF))
    if abs(n) > f32(192.0):
        return s1 * s1
    s2 = _from_bits(np.int32((e - g) & 0xFFFFFFFF))
    return fma32(s2, j, s2) * s1


# llamba follows llama.cpp's AVX2 build on every host, as it does in its 8-lane float sums:
# an AVX-512 build of llama.cpp computes exp otherwise (scaling by 2**n with vscalefps)
expf = expf_avx2


@inline
def expf_avx2_lanes(isa, x):
    """expf_avx2 of every lane of an F32xN x, the same operations lane-wise: (result, ok),
    ok False when some lane needs expf_avx2's large-|n| path (the result is then not valid
    there and the caller takes those lanes one at a time)."""
    z = fma(x, splat_f32(isa, INV_LN2), splat_f32(isa, SHIFTER))
    n = z - SHIFTER  # round(x / ln 2)
    neg = n * f32(-1.0)
    b = fma(neg, splat_f32(isa, LN2_LO), fma(neg, splat_f32(isa, LN2_HI), x))  # x - n ln 2
    u = b * b
    p = fma(splat_f32(isa, C1), b, splat_f32(isa, C2))
    j = fma(fma(p, u, fma(splat_f32(isa, C3), b, splat_f32(isa, C4))), u, b * C5)
    k = bits_f32((float_bits(z) << 23) + ONE_BITS)  # 2**n
    far = gt(vabs(n), f32(126.0))
    ok = (lane(far, 0) | lane(far, 1) | lane(far, 2) | lane(far, 3)
          | lane(far, 4) | lane(far, 5) | lane(far, 6) | lane(far, 7)) == 0  # fmt: skip
    return fma(j, k, k), ok
