"""Explicit SIMD for Numba: LLVM vector types and the instruction-set-specific dot products.

Kernels work on 16 lanes (one lane per weight row of a 16-row tile):
    I32x16  4 weight codes per row, or 4 activation bytes broadcast; integer sums per row
    F32x16  float accumulators, one per row
Operators (+ - * & | << >>) work lane-wise on them; `>>` is a logical shift.

The instruction set is chosen by an `isa` argument, a static token (static.py) passed down
the kernel: "avx512vnni" (vpdpbusd on zmm), "avx2" (vpmaddubsw + vpmaddwd on two ymm
halves) or "portable" (plain LLVM vector IR, lowered for whatever CPU runs it). One kernel
source compiles (and caches) one specialization per instruction set, and the AVX-512 form
is only compiled when requested.
"""

from __future__ import annotations

import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.datamodel import models
from numba.core.imputils import lower_builtin
from numba.core.typing.templates import AbstractTemplate, infer_global, signature
from numba.extending import intrinsic, register_model

from .static import StaticType, static

# ---------------------------------------------------------------- instruction-set tokens

PORTABLE = "portable"
AVX2 = "avx2"
AVX512_VNNI = "avx512vnni"
ISA_NAMES = (PORTABLE, AVX2, AVX512_VNNI)


ISA_TOKENS = {name: static(name) for name in ISA_NAMES}


# ---------------------------------------------------------------- vector types


class VecType(types.Type):
    def __init__(self, kind: str, bits: int, count: int):
        self.kind, self.bits, self.count = kind, bits, count
        super().__init__(name=f"{kind}{bits}x{count}")

    def llvm(self) -> ir.VectorType:
        elem = ir.FloatType() if self.kind == "f" else ir.IntType(self.bits)
        return ir.VectorType(elem, self.count)


I8x64 = VecType("i", 8, 64)
I32x16 = VecType("i", 32, 16)
F32x16 = VecType("f", 32, 16)


@register_model(VecType)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, fe_type.llvm())


def _splat(builder, value, vtype: ir.VectorType):
    """A vector with every lane equal to the scalar `value`."""
    undef = ir.Constant(vtype, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), vtype.count), [0] * vtype.count)
    return builder.shuffle_vector(one, undef, mask)


def _call(builder, name, ret, args):
    fnty = ir.FunctionType(ret, [a.type for a in args])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    return builder.call(fn, args)


def _data_ptr(context, builder, arrty, arr, index, elem_ptr_type):
    """Pointer (cast to elem_ptr_type) to element `index` of a C-contiguous 1-D array."""
    ary = context.make_array(arrty)(context, builder, arr)
    ptr = builder.gep(ary.data, [index])
    return builder.bitcast(ptr, elem_ptr_type)


# ---------------------------------------------------------------- loads, stores, splats


@intrinsic
def load_i32x16(typingctx, arr, index):
    """16 consecutive 4-byte words of a 1-D int32/uint32 array from `index`, as I32x16."""
    sig = I32x16(arr, types.intp)

    def codegen(context, builder, signature, args):
        ptr = _data_ptr(context, builder, arr, args[0], args[1], I32x16.llvm().as_pointer())
        return builder.load(ptr, align=4)

    return sig, codegen


@intrinsic
def load_f16x16(typingctx, arr, index):
    """16 consecutive fp16 values (uint16 bits) of a 1-D array from `index`, as F32x16."""
    sig = F32x16(arr, types.intp)

    def codegen(context, builder, signature, args):
        half16 = ir.VectorType(ir.HalfType(), 16)
        ptr = _data_ptr(context, builder, arr, args[0], args[1], half16.as_pointer())
        return builder.fpext(builder.load(ptr, align=2), F32x16.llvm())

    return sig, codegen


@intrinsic
def load_bf16x16(typingctx, arr, index):
    """16 consecutive bfloat16 values (uint16 bits) of a 1-D array from `index`, as F32x16."""
    sig = F32x16(arr, types.intp)

    def codegen(context, builder, signature, args):
        i16x16 = ir.VectorType(ir.IntType(16), 16)
        ptr = _data_ptr(context, builder, arr, args[0], args[1], i16x16.as_pointer())
        wide = builder.zext(builder.load(ptr, align=2), I32x16.llvm())
        wide = builder.shl(wide, ir.Constant(I32x16.llvm(), [16] * 16))
        return builder.bitcast(wide, F32x16.llvm())

    return sig, codegen


@intrinsic
def load_f32x16(typingctx, arr, index):
    """16 consecutive float32 of a 1-D array from `index`."""
    sig = F32x16(arr, types.intp)

    def codegen(context, builder, signature, args):
        ptr = _data_ptr(context, builder, arr, args[0], args[1], F32x16.llvm().as_pointer())
        return builder.load(ptr, align=4)

    return sig, codegen


@intrinsic
def store_f32x16(typingctx, arr, index, value):
    """arr[index:index+16] = value (1-D float32 array)."""
    sig = types.void(arr, types.intp, F32x16)

    def codegen(context, builder, signature, args):
        ptr = _data_ptr(context, builder, arr, args[0], args[1], F32x16.llvm().as_pointer())
        builder.store(args[2], ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def splat_i32(typingctx, value):
    """I32x16 with every lane = value (e.g. 4 activation bytes read as one int32)."""
    sig = I32x16(types.int32)

    def codegen(context, builder, signature, args):
        return _splat(builder, args[0], I32x16.llvm())

    return sig, codegen


@intrinsic
def splat_f32(typingctx, value):
    sig = F32x16(types.float32)

    def codegen(context, builder, signature, args):
        return _splat(builder, args[0], F32x16.llvm())

    return sig, codegen


@intrinsic
def zeros_i32x16(typingctx):
    sig = I32x16()

    def codegen(context, builder, signature, args):
        return ir.Constant(I32x16.llvm(), [0] * 16)

    return sig, codegen


@intrinsic
def zeros_f32x16(typingctx):
    sig = F32x16()

    def codegen(context, builder, signature, args):
        return ir.Constant(F32x16.llvm(), [0.0] * 16)

    return sig, codegen


@intrinsic
def to_f32(typingctx, v):
    """I32x16 to F32x16 (exact below 2**24)."""
    sig = F32x16(I32x16)

    def codegen(context, builder, signature, args):
        return builder.sitofp(args[0], F32x16.llvm())

    return sig, codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c lane-wise, fused (F32x16)."""
    sig = F32x16(F32x16, F32x16, F32x16)

    def codegen(context, builder, signature, args):
        return _call(builder, "llvm.fma.v16f32", F32x16.llvm(), list(args))

    return sig, codegen


@intrinsic
def sext_byte(typingctx, v, k):
    """Signed byte k (0..3) of each lane of I32x16, sign-extended (k a compile-time int)."""
    sig = I32x16(I32x16, types.intp)

    def codegen(context, builder, signature, args):
        vt = I32x16.llvm()
        k = builder.trunc(args[1], ir.IntType(32))
        up = builder.shl(args[0], _splat(builder, builder.sub(ir.Constant(k.type, 24),
                                                             builder.mul(k, ir.Constant(k.type, 8))), vt))  # fmt: skip
        return builder.ashr(up, ir.Constant(vt, [24] * 16))

    return sig, codegen


# ---------------------------------------------------------------- lane-wise operators
# Registered as typing templates + lowerings (no helper functions to compile): a vector with
# a vector of its type, or with a scalar that is splatted; `>>` on integers is logical.

_INT_OPS = {
    operator.add: "add", operator.sub: "sub", operator.mul: "mul", operator.and_: "and_",
    operator.or_: "or_", operator.lshift: "shl", operator.rshift: "lshr",
}  # fmt: skip
_FLOAT_OPS = {operator.add: "fadd", operator.sub: "fsub", operator.mul: "fmul"}


def _register_operator(pyop):
    class VecOperator(AbstractTemplate):
        key = pyop

        def generic(self, args, kws):
            if len(args) != 2 or not isinstance(args[0], VecType):
                return None
            a, b = args
            table = _FLOAT_OPS if a.kind == "f" else _INT_OPS
            scalar_ok = types.Number if a.kind == "f" else types.Integer
            if pyop in table and (b == a or isinstance(b, scalar_ok)):
                return signature(a, a, b)
            return None

    infer_global(pyop)(VecOperator)

    def lower(context, builder, sig, args):
        vty, bty = sig.args
        a, b = args
        if not isinstance(bty, VecType):
            scalar = types.float32 if vty.kind == "f" else types.int32
            b = _splat(builder, context.cast(builder, b, bty, scalar), vty.llvm())
        table = _FLOAT_OPS if vty.kind == "f" else _INT_OPS
        return getattr(builder, table[pyop])(a, b)

    for other in (VecType, types.Integer, types.Float):
        lower_builtin(pyop, VecType, other)(lower)


for _op in _INT_OPS:
    _register_operator(_op)


# ---------------------------------------------------------------- dot products per ISA

_I8x32 = ir.VectorType(ir.IntType(8), 32)
_I16x16 = ir.VectorType(ir.IntType(16), 16)
_I32x8 = ir.VectorType(ir.IntType(32), 8)


def _halves(builder, v):
    """The two 256-bit halves of a 512-bit vector (lanes 0-7 and 8-15 of a tile)."""
    n = v.type.count // 2
    lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(n))))
    hi = builder.shuffle_vector(
        v, v, ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(n, 2 * n)))
    )
    return lo, hi


def _join(builder, lo, hi):
    n = lo.type.count
    idx = ir.Constant(ir.VectorType(ir.IntType(32), 2 * n), list(range(2 * n)))
    return builder.shuffle_vector(lo, hi, idx)


def _avx2_dot_u8s8(builder, u, s):
    """Per 32-bit lane: sum of 4 u8*s8 products (pair sums must fit int16)."""
    ones = ir.Constant(_I16x16, [1] * 16)
    pairs = _call(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, [u, s])
    return _call(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, [pairs, ones])


def _portable_dot(builder, a, b, a_signed):
    """Per 32-bit lane of the result: sum of 4 byte products, in plain vector IR."""
    i16x64 = ir.VectorType(ir.IntType(16), 64)
    i32x32 = ir.VectorType(ir.IntType(32), 32)
    wa = builder.sext(a, i16x64) if a_signed else builder.zext(a, i16x64)
    prod = builder.mul(wa, builder.sext(b, i16x64))  # |u8 * s8| < 2**15
    even, odd = (
        builder.shuffle_vector(prod, prod, ir.Constant(ir.VectorType(ir.IntType(32), 32),
                                                       list(range(k, 64, 2))))
        for k in (0, 1)
    )  # fmt: skip
    pair = builder.add(builder.sext(even, i32x32), builder.sext(odd, i32x32))
    even, odd = (
        builder.shuffle_vector(pair, pair, ir.Constant(ir.VectorType(ir.IntType(32), 16),
                                                       list(range(k, 32, 2))))
        for k in (0, 1)
    )  # fmt: skip
    return builder.add(even, odd)


def _dot_codegen(isa: str, signed_weights: bool):
    def codegen(context, builder, signature, args):
        _, acc, w, a = args
        w = builder.bitcast(w, I8x64.llvm())
        a = builder.bitcast(a, I8x64.llvm())
        if isa == AVX512_VNNI:
            if signed_weights:
                # vpdpbusd wants unsigned weights: (w + 128) . a - 128 . a
                flip = ir.Constant(I8x64.llvm(), [0x80] * 64)
                acc = _call(builder, "llvm.x86.avx512.vpdpbusd.512", I32x16.llvm(),
                            [acc, builder.xor(w, flip), a])  # fmt: skip
                neg_a = builder.sub(ir.Constant(I8x64.llvm(), [0] * 64), a)
                return _call(builder, "llvm.x86.avx512.vpdpbusd.512", I32x16.llvm(),
                             [acc, flip, neg_a])  # fmt: skip
            return _call(builder, "llvm.x86.avx512.vpdpbusd.512", I32x16.llvm(), [acc, w, a])
        if isa == AVX2:
            w_lo, w_hi = _halves(builder, w)
            a_lo, a_hi = _halves(builder, a)
            if signed_weights:
                # vpmaddubsw needs an unsigned operand: |w| . (a with the sign of w)
                sums = []
                for wh, ah in ((w_lo, a_lo), (w_hi, a_hi)):
                    absw = _call(builder, "llvm.abs.v32i8", _I8x32,
                                 [wh, ir.Constant(ir.IntType(1), 0)])  # fmt: skip
                    sa = _call(builder, "llvm.x86.avx2.psign.b", _I8x32, [ah, wh])
                    sums.append(_avx2_dot_u8s8(builder, absw, sa))
            else:
                sums = [_avx2_dot_u8s8(builder, w_lo, a_lo), _avx2_dot_u8s8(builder, w_hi, a_hi)]
            return builder.add(acc, _join(builder, *sums))
        return builder.add(acc, _portable_dot(builder, w, a, signed_weights))

    return codegen


def _dot_intrinsic(signed_weights: bool, doc: str):
    @intrinsic
    def dot(typingctx, isa, acc, w, a):
        if not isinstance(isa, StaticType) or isa.value not in ISA_NAMES:
            return None
        return I32x16(isa, I32x16, I32x16, I32x16), _dot_codegen(isa.value, signed_weights)

    dot.__doc__ = doc
    return dot


dot_u8s8 = _dot_intrinsic(
    False,
    "acc + per lane, the sum of the 4 products of the lane's unsigned weight bytes (each\n"
    "<= 127) with the lane's signed activation bytes. Arguments are I32x16 (4 bytes a lane).",
)
dot_s8s8 = _dot_intrinsic(True, "As dot_u8s8 for signed weight bytes.")
