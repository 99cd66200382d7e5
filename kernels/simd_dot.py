"""The instruction-set-specific part of the SIMD layer: byte dot products into int32 lanes.

Vector types, loads and lane-wise operators are in simd.py; see it for the isa tokens.
"""

from __future__ import annotations

from llvmlite import ir
from numba.extending import intrinsic

from .simd import _I8, AVX2, I32, PARTIAL, VNNI_NAMES, _call, _isa_lanes

# ---------------------------------------------------------------- dot products per ISA
# dot_s8s8 adds 4 byte products per lane directly into int32. The partial sums (pdot) keep
# products in the cheapest form each ISA allows until they are flushed into int32 lanes: on
# AVX2, int16 pair sums (vpmaddubsw) widened by one vpmaddwd per flush, which can also apply a
# per-lane scale; on AVX-512 VNNI and the portable path, int32 lanes already. The caller
# flushes before int16 sums could overflow: the pair sums added since the last flush must
# stay within +-32767 (e.g. 8 pdots of 4-bit codes, 4 of 5-bit, 2 of 6-bit, with activations
# in -127..127).

_I16x16 = ir.VectorType(ir.IntType(16), 16)
_I32x8 = ir.VectorType(ir.IntType(32), 8)
_VPDPBUSD = "llvm.x86.avx512.vpdpbusd.512"


def _avx2_madd(builder, u, s):
    """vpmaddubsw: unsigned u times signed s, adjacent products summed in int16."""
    return _call(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, [u, s])


def _avx2_widen(builder, pairs, mult):
    """vpmaddwd: int16 pairs times mult, summed per int32 lane."""
    return _call(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, [pairs, mult])


def _halves(builder, v):
    """The two halves of a vector (rows 0-7 and 8-15 of a 16-lane value)."""
    n = v.type.count // 2
    idx = [ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(k, k + n))) for k in (0, n)]
    return [builder.shuffle_vector(v, v, i) for i in idx]


def _join(builder, lo, hi):
    idx = ir.Constant(
        ir.VectorType(ir.IntType(32), 2 * lo.type.count), list(range(2 * lo.type.count))
    )
    return builder.shuffle_vector(lo, hi, idx)


def _per_ymm(builder, n, fn, *vectors):
    """fn on 256-bit vectors: applied directly for 8 lanes, to each half and joined for 16."""
    if n == 8:
        return fn(*vectors)
    parts = [fn(*halves) for halves in zip(*(_halves(builder, v) for v in vectors), strict=True)]
    return _join(builder, *parts)


def _portable_dot(builder, a, b, a_signed):
    """Per 32-bit lane, the sum of its 4 byte products, in plain vector IR (any width)."""
    n = a.type.count
    i16 = ir.VectorType(ir.IntType(16), n)
    wa = builder.sext(a, i16) if a_signed else builder.zext(a, i16)
    prod = builder.mul(wa, builder.sext(b, i16))  # |u8 * s8| < 2**15

    def pair_sum(v, count, wide):
        idx = [ir.Constant(ir.VectorType(ir.IntType(32), count // 2), list(range(k, count, 2)))
               for k in (0, 1)]  # fmt: skip
        even, odd = (builder.shuffle_vector(v, v, i) for i in idx)
        return builder.add(builder.sext(even, wide), builder.sext(odd, wide))

    pairs = pair_sum(prod, n, ir.VectorType(ir.IntType(32), n // 2))
    return pair_sum(pairs, n // 2, ir.VectorType(ir.IntType(32), n // 4))


@intrinsic
def dot_s8s8(typingctx, isa, acc, w, a):
    """acc + per lane, the sum of the 4 products of its signed weight bytes (w) with its
    signed activation bytes (a); all I32xN."""
    name, n = _isa_lanes(isa)
    if name is None:
        return None

    def codegen(context, builder, signature, args):
        acc, w, a = args[1], builder.bitcast(args[2], _I8[n]), builder.bitcast(args[3], _I8[n])
        if name in VNNI_NAMES:
            # vpdpbusd takes unsigned weights: (w + 128) . a - 128 . a
            flip = ir.Constant(_I8[n], [0x80] * (4 * n))
            acc = _call(builder, _VPDPBUSD, acc.type, [acc, builder.xor(w, flip), a])
            neg_a = builder.sub(ir.Constant(_I8[n], [0] * (4 * n)), a)
            return _call(builder, _VPDPBUSD, acc.type, [acc, flip, neg_a])
        if name == AVX2:

            def dot(w, a):  # vpmaddubsw takes one unsigned operand: |w| . (a with w's sign)
                no_poison = ir.Constant(ir.IntType(1), 0)
                abs_w = _call(builder, "llvm.abs.v32i8", w.type, [w, no_poison])
                signed_a = _call(builder, "llvm.x86.avx2.psign.b", w.type, [a, w])
                pairs = _avx2_madd(builder, abs_w, signed_a)
                return _avx2_widen(builder, pairs, ir.Constant(_I16x16, [1] * 16))

            return builder.add(acc, _per_ymm(builder, n, dot, w, a))
        return builder.add(acc, _portable_dot(builder, w, a, True))

    return I32[n](isa, I32[n], I32[n], I32[n]), codegen


@intrinsic
def pdot(typingctx, isa, p, w, a):
    """p + the products of w's unsigned weight bytes (<= 127) with a's signed activations."""
    name, n = _isa_lanes(isa)
    if name is None:
        return None

    def codegen(context, builder, signature, args):
        p, w, a = args[1], builder.bitcast(args[2], _I8[n]), builder.bitcast(args[3], _I8[n])
        if name == AVX2:
            return builder.add(
                p, _per_ymm(builder, n, lambda w, a: _avx2_madd(builder, w, a), w, a)
            )
        p32 = builder.bitcast(p, I32[n].llvm())
        if name in VNNI_NAMES:
            s = _call(builder, _VPDPBUSD, p32.type, [p32, w, a])
        else:
            s = builder.add(p32, _portable_dot(builder, w, a, False))
        return builder.bitcast(s, PARTIAL[n].llvm())

    return PARTIAL[n](isa, PARTIAL[n], I32[n], I32[n]), codegen


def _flush(name: str, n: int, scaled: bool):
    def codegen(context, builder, signature, args):
        acc, p = args[1], args[2]
        if name == AVX2:
            if scaled:  # the lane's scale in both int16 halves: vpmaddwd applies it to the pair
                s = args[3]
                low = builder.and_(s, ir.Constant(s.type, [0xFFFF] * n))
                s = builder.or_(low, builder.shl(s, ir.Constant(s.type, [16] * n)))
                mult = builder.bitcast(s, PARTIAL[n].llvm())
            else:
                mult = ir.Constant(PARTIAL[n].llvm(), [1] * (2 * n))
            wide = _per_ymm(builder, n, lambda p, m: _avx2_widen(builder, p, m), p, mult)
            return builder.add(acc, wide)
        s = builder.bitcast(p, acc.type)
        if scaled:
            s = builder.mul(s, args[3])
        return builder.add(acc, s)

    return codegen


@intrinsic
def pflush(typingctx, isa, acc, p):
    """acc + p, per int32 lane (I32xN)."""
    name, n = _isa_lanes(isa)
    if name is None:
        return None
    return I32[n](isa, I32[n], PARTIAL[n]), _flush(name, n, False)


@intrinsic
def pflush_scaled(typingctx, isa, acc, p, scale):
    """acc + p * scale, per int32 lane; scale (I32xN) must fit in int16."""
    name, n = _isa_lanes(isa)
    if name is None:
        return None
    return I32[n](isa, I32[n], PARTIAL[n], I32[n]), _flush(name, n, True)


_VPDPWSSD = "llvm.x86.avx512.vpdpwssd.512"


@intrinsic
def dot_i16(typingctx, isa, acc, a, b):
    """acc + per int32 lane, lo16(a) * lo16(b) + hi16(a) * hi16(b) (signed int16 halves);
    all I32xN. One vpdpwssd on AVX-512 VNNI; plain vector IR elsewhere."""
    name, n = _isa_lanes(isa)
    if name is None:
        return None

    def codegen(context, builder, signature, args):
        acc, a, b = args[1:]
        if name in VNNI_NAMES:
            return _call(builder, _VPDPWSSD, acc.type, [acc, a, b])
        i16 = ir.VectorType(ir.IntType(16), 2 * n)
        wide = [builder.sext(builder.bitcast(v, i16), ir.VectorType(ir.IntType(32), 2 * n))
                for v in (a, b)]  # fmt: skip
        prod = builder.mul(*wide)
        idx = [ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(k, 2 * n, 2)))
               for k in (0, 1)]  # fmt: skip
        lo, hi = (builder.shuffle_vector(prod, prod, i) for i in idx)
        return builder.add(acc, builder.add(lo, hi))

    return I32[n](isa, I32[n], I32[n], I32[n]), codegen


@intrinsic
def dot_u8s8(typingctx, isa, acc, u, s):
    """acc + per int32 lane, the 4 products of u's unsigned bytes (0..255) with s's signed
    bytes: vpdpbusd on AVX-512 VNNI, plain vector IR elsewhere (AVX2's vpmaddubsw would
    saturate such products in int16: callers use it on VNNI only)."""
    name, n = _isa_lanes(isa)
    if name is None:
        return None

    def codegen(context, builder, signature, args):
        acc, u, s = args[1], builder.bitcast(args[2], _I8[n]), builder.bitcast(args[3], _I8[n])
        if name in VNNI_NAMES:
            return _call(builder, _VPDPBUSD, acc.type, [acc, u, s])
        return builder.add(acc, _portable_dot(builder, u, s, False))

    return I32[n](isa, I32[n], I32[n], I32[n]), codegen
