"""Explicit SIMD for Numba: LLVM vector types, loads/stores and lane-wise operations.

Kernels work on N lanes, one per weight row of a 16-row tile (N = 16 by default: one zmm on
AVX-512, two ymm halves on AVX2; an isa_variant with 8 lanes takes a tile in two passes):
    I32xN   4 weight codes per row, or 4 activation bytes broadcast; integer sums per row
    F32xN   float accumulators, one per row
    PARTIAL byte-product sums not yet widened to int32 (simd_dot.pdot)
Operators (+ - * & | ^ << >>) work lane-wise, also with a scalar; `>>` is a logical shift.

The instruction set is an `isa` argument, a static token (static.py) passed down the kernel:
"avx512amx" (AVX-512 VNNI, and AMX tiles for prompt batches: amx.py), "avx512vnni" (vpdpbusd on
zmm), "avx2" (vpmaddubsw + vpmaddwd on ymm) or "portable" (plain LLVM vector IR, lowered for
whatever CPU runs it); the dot products that differ per
instruction set are in simd_dot.py. One kernel source compiles (and caches)
one specialization per instruction set; the AVX-512 form is only compiled when requested.
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

# ---------------------------------------------------------------- instruction sets

PORTABLE = "portable"
AVX2 = "avx2"
AVX512_VNNI = "avx512vnni"
AVX512_AMX = "avx512amx"  # AVX-512 VNNI everywhere, plus AMX tiles in prompt batches
ISA_NAMES = (PORTABLE, AVX2, AVX512_VNNI, AVX512_AMX)
VNNI_NAMES = (AVX512_VNNI, AVX512_AMX)  # the paths that run the AVX-512 VNNI code
LANES = {AVX512_AMX: 16, AVX512_VNNI: 16, AVX2: 16, PORTABLE: 16}  # rows handled per vector


def isa_variant(name: str, n_lanes: int | None = None):
    """The static token of an instruction set, handling n_lanes rows per vector (8 or 16)."""
    return static((name, n_lanes or LANES[name]))


ISA_TOKENS = {name: isa_variant(name) for name in ISA_NAMES}


def _isa_lanes(isa) -> tuple[str, int] | tuple[None, None]:
    """(name, lanes) of an isa token's Numba type, or (None, None) if it is not one."""
    if isinstance(isa, StaticType) and isinstance(isa.value, tuple) and len(isa.value) == 2:
        name, n = isa.value
        if name in ISA_NAMES and n in (8, 16) and not (name in VNNI_NAMES and n != 16):
            return name, n
    return None, None


# ---------------------------------------------------------------- vector types


class VecType(types.Type):
    def __init__(self, kind: str, bits: int, count: int):
        self.kind, self.bits, self.count = kind, bits, count
        super().__init__(name=f"{kind}{bits}x{count}")

    def llvm(self) -> ir.VectorType:
        elem = ir.FloatType() if self.kind == "f" else ir.IntType(self.bits)
        return ir.VectorType(elem, self.count)


I32 = {n: VecType("i", 32, n) for n in (8, 16)}  # by lane count
F32 = {n: VecType("f", 32, n) for n in (8, 16)}
PARTIAL = {n: VecType("i", 16, 2 * n) for n in (8, 16)}  # same bits as I32[n]
_I8 = {n: ir.VectorType(ir.IntType(8), 4 * n) for n in (8, 16)}


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


def _element_ptr(context, builder, arrty, arr, index, pointee):
    """Pointer to element `index` of a C-contiguous 1-D array, cast to pointee*."""
    ary = context.make_array(arrty)(context, builder, arr)
    return builder.bitcast(builder.gep(ary.data, [index]), pointee.as_pointer())


# ---------------------------------------------------------------- lanes, loads, stores, splats


@intrinsic
def lanes(typingctx, isa):
    """Rows one vector holds on this instruction set (a compile-time constant)."""
    name, n = _isa_lanes(isa)
    if name is None:
        return None

    def codegen(context, builder, signature, args):
        return ir.Constant(ir.IntType(64), n)

    return types.intp(isa), codegen


def _isa_flag(doc: str, names: tuple[str, ...]):
    """An intrinsic flag(isa): whether the isa token is one of `names`, a compile-time
    constant."""

    @intrinsic
    def flag(typingctx, isa):
        name, _ = _isa_lanes(isa)
        if name is None:
            return None

        def codegen(context, builder, signature, args):
            return context.get_constant(types.boolean, name in names)

        return types.boolean(isa), codegen

    flag.__doc__ = doc
    return flag


many_registers = _isa_flag(
    "Whether isa has 32 vector registers and int32 partial sums (AVX-512 VNNI): the shapes "
    "that keep four tokens in flight need both.",
    VNNI_NAMES,
)
has_tiles = _isa_flag("Whether isa multiplies prompt batches on AMX tiles (amx.py).", (AVX512_AMX,))


def _loader(doc, result, convert):
    """An intrinsic load(isa, arr, index) of N consecutive elements converted to result[N]."""

    @intrinsic
    def load(typingctx, isa, arr, index):
        name, n = _isa_lanes(isa)
        if name is None:
            return None

        def codegen(context, builder, signature, args):
            return convert(context, builder, signature.args[1], args[1], args[2], n)

        return result[n](isa, arr, types.intp), codegen

    load.__doc__ = doc
    return load


def _load_words(context, builder, arrty, arr, index, n):
    return builder.load(_element_ptr(context, builder, arrty, arr, index, I32[n].llvm()), align=4)


def _load_f32(context, builder, arrty, arr, index, n):
    return builder.load(_element_ptr(context, builder, arrty, arr, index, F32[n].llvm()), align=4)


def _load_f16(context, builder, arrty, arr, index, n):
    halves = ir.VectorType(ir.HalfType(), n)
    v = builder.load(_element_ptr(context, builder, arrty, arr, index, halves), align=2)
    return builder.fpext(v, F32[n].llvm())


def _load_bf16(context, builder, arrty, arr, index, n):
    bits = ir.VectorType(ir.IntType(16), n)
    v = builder.load(_element_ptr(context, builder, arrty, arr, index, bits), align=2)
    wide = builder.shl(builder.zext(v, I32[n].llvm()), ir.Constant(I32[n].llvm(), [16] * n))
    return builder.bitcast(wide, F32[n].llvm())


def _load_splat_word(context, builder, arrty, arr, index, n):
    word = builder.load(_element_ptr(context, builder, arrty, arr, index, ir.IntType(32)), align=4)
    return _splat(builder, word, I32[n].llvm())


load_i32 = _loader("N 4-byte words of a 1-D int32 array from index, as I32xN.", I32, _load_words)
# splat_i32(isa, arr[index]) without Numba's negative-index wraparound (a compare and a
# conditional move per read, on the ports the vector code needs): a vpdpbusd's activation
# word becomes its broadcast memory operand and nothing else
load_splat_i32 = _loader("Word index of a 1-D int32 array in every lane, as I32xN.", I32,
                         _load_splat_word)  # fmt: skip
load_f32 = _loader("N float32 of a 1-D array from index.", F32, _load_f32)
load_f16 = _loader(
    "N fp16 values (uint16 bits) of a 1-D array from index, as F32xN.", F32, _load_f16
)
load_bf16 = _loader(
    "N bf16 values (uint16 bits) of a 1-D array from index, as F32xN.", F32, _load_bf16
)


@intrinsic
def store_f32(typingctx, arr, index, value):
    """arr[index : index + N] = value (F32xN) for a 1-D float32 array."""
    if not (isinstance(value, VecType) and value.kind == "f"):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_ptr(context, builder, arr, args[0], args[1], value.llvm())
        builder.store(args[2], ptr, align=4)
        return context.get_dummy_value()

    return types.void(arr, types.intp, value), codegen


@intrinsic
def store_i32(typingctx, arr, index, value):
    """arr[index : index + N] = value (I32xN) for a 1-D int32 array."""
    if not (isinstance(value, VecType) and value.kind == "i" and value.bits == 32):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_ptr(context, builder, arr, args[0], args[1], value.llvm())
        builder.store(args[2], ptr, align=4)
        return context.get_dummy_value()

    return types.void(arr, types.intp, value), codegen


def _prefetch_into(locality, doc):
    """A prefetch intrinsic for reads (llvm.prefetch, data cache) at this locality."""

    @intrinsic
    def prefetch(typingctx, arr, index):
        def codegen(context, builder, signature, args):
            ptr = _element_ptr(context, builder, arr, args[0], args[1], ir.IntType(8))
            i32 = ir.IntType(32)
            _call(builder, "llvm.prefetch.p0", ir.VoidType(),
                  [ptr, ir.Constant(i32, 0), ir.Constant(i32, locality), ir.Constant(i32, 1)])  # fmt: skip
            return context.get_dummy_value()

        return types.void(arr, types.intp), codegen

    prefetch.__doc__ = doc
    return prefetch


# prefetch: into L2 (prefetcht1). Into L1 too (prefetcht0), the matvecs from DRAM streamed
# less, each line holding an L1 fill buffer the kernel's own loads wait on: 11008x4096, of
# the bandwidth, Q4_K 82-84 -> 89-91 %, Q4_0 94 -> 99 %, the other types unchanged
# (interleaved runs); prefetchnta halved them
PREFETCH_DOC = "Hint that arr[index] (a 1-D array) will be read soon: its cache line is "
prefetch = _prefetch_into(
    2, PREFETCH_DOC + "fetched into L2 ahead; never faults, also past the array's end."
)
prefetch_l1 = _prefetch_into(
    3,
    PREFETCH_DOC + "fetched into L1 (for lines in L2 that the next few hundred "
    "instructions read); never faults, also past the array's end.",
)


@intrinsic
def schedule_barrier(typingctx):
    """Keeps the instruction scheduler from moving code across this point (an empty inline
    asm with side effects ends a scheduling region; it emits no instruction). Registers are
    still allocated across it."""

    def codegen(context, builder, signature, args):
        builder.asm(ir.FunctionType(ir.VoidType(), []), "", "", [], True)
        return context.get_dummy_value()

    return types.void(), codegen


def _splatter(doc, result, scalar):
    @intrinsic
    def splat(typingctx, isa, value):
        name, n = _isa_lanes(isa)
        if name is None:
            return None

        def codegen(context, builder, signature, args):
            v = context.cast(builder, args[1], signature.args[1], scalar)
            return _splat(builder, v, result[n].llvm())

        return result[n](isa, value), codegen

    splat.__doc__ = doc
    return splat


splat_i32 = _splatter("I32xN with every lane = value (e.g. 4 activation bytes as one int32).",
                      I32, types.int32)  # fmt: skip
splat_f32 = _splatter("F32xN with every lane = value.", F32, types.float32)


def _zeros(doc, result):
    @intrinsic
    def zeros(typingctx, isa):
        name, n = _isa_lanes(isa)
        if name is None:
            return None
        vt = result[n]

        def codegen(context, builder, signature, args):
            return ir.Constant(vt.llvm(), [0] * vt.count)

        return vt(isa), codegen

    zeros.__doc__ = doc
    return zeros


zeros_i32 = _zeros("I32xN of zeros.", I32)
zeros_f32 = _zeros("F32xN of zeros.", F32)
pzero = _zeros("An empty partial sum (see pdot).", PARTIAL)


@intrinsic
def to_f32(typingctx, v):
    """I32xN to F32xN (exact below 2**24)."""
    if not (isinstance(v, VecType) and v.kind == "i" and v.bits == 32):
        return None
    out = F32[v.count]

    def codegen(context, builder, signature, args):
        return builder.sitofp(args[0], out.llvm())

    return out(v), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c lane-wise, fused (F32xN)."""
    if not (isinstance(a, VecType) and a.kind == "f" and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return _call(builder, f"llvm.fma.v{a.count}f32", a.llvm(), list(args))

    return a(a, a, a), codegen


@intrinsic
def sext_byte(typingctx, v, k):
    """Signed byte k (0..3) of each 32-bit lane, sign-extended (I32xN)."""
    if not (isinstance(v, VecType) and v.kind == "i" and v.bits == 32):
        return None

    def codegen(context, builder, signature, args):
        vt = v.llvm()
        k = builder.trunc(args[1], ir.IntType(32))
        up = builder.sub(ir.Constant(k.type, 24), builder.mul(k, ir.Constant(k.type, 8)))
        shifted = builder.shl(args[0], _splat(builder, up, vt))
        return builder.ashr(shifted, ir.Constant(vt, [24] * v.count))

    return v(v, types.intp), codegen


@intrinsic
def ashr(typingctx, v, k):
    """Each 32-bit lane shifted right by k with its sign (I32xN; `>>` is logical)."""
    if not (isinstance(v, VecType) and v.kind == "i" and v.bits == 32):
        return None

    def codegen(context, builder, signature, args):
        k = builder.trunc(args[1], ir.IntType(32))
        return builder.ashr(args[0], _splat(builder, k, v.llvm()))

    return v(v, types.intp), codegen


@intrinsic
def copy_elements(typingctx, dst, dst_start, src, src_start, n):
    """dst[dst_start:dst_start + n] = src[src_start:src_start + n], one memcpy, for 1-D
    C-contiguous arrays of one dtype; no bounds checks. An element loop is vectorized with
    runtime checks and epilogues: regrouping a batch's activations (tiled.group_major) took
    LLVM ~0.7 s to compile that way."""
    arrays = (dst, src)
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays):
        return None
    if dst.dtype != src.dtype or not dst.mutable:
        return None

    def codegen(context, builder, signature, args):
        d, d0, s, s0, count = args
        elem = context.get_data_type(dst.dtype)
        to = _element_ptr(context, builder, dst, d, d0, elem)
        frm = _element_ptr(context, builder, src, s, s0, elem)
        cgutils.raw_memcpy(builder, to, frm, count, context.get_abi_sizeof(elem))
        return context.get_dummy_value()

    return types.none(dst, types.intp, src, types.intp, types.intp), codegen


# ---------------------------------------------------------------- lane-wise operators
# Registered as typing templates + lowerings (no helper functions to compile): a vector with
# a vector of its type, or with a scalar that is splatted; `>>` on integers is logical.

_INT_OPS = {
    operator.add: "add", operator.sub: "sub", operator.mul: "mul", operator.and_: "and_",
    operator.or_: "or_", operator.xor: "xor", operator.lshift: "shl", operator.rshift: "lshr",
}  # fmt: skip
_FLOAT_OPS = {
    operator.add: "fadd", operator.sub: "fsub", operator.mul: "fmul", operator.truediv: "fdiv",
}  # fmt: skip


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


for _op in {**_INT_OPS, **_FLOAT_OPS}:
    _register_operator(_op)


# ---------------------------------------------------------------- lane-wise comparisons
# Masks are I32xN lanes of -1 (true) or 0; combine them with & and |.


def _compare(doc, fop, iop):
    @intrinsic
    def compare(typingctx, a, b):
        if not (
            isinstance(a, VecType) and a.bits == 32 and (b == a or isinstance(b, types.Number))
        ):
            return None
        mask = I32[a.count]

        def codegen(context, builder, signature, args):
            x, y = args
            if not isinstance(signature.args[1], VecType):
                scalar = types.float32 if a.kind == "f" else types.int32
                y = _splat(builder, context.cast(builder, y, signature.args[1], scalar), a.llvm())
            if a.kind == "f":
                bits = builder.fcmp_ordered(fop, x, y)
            else:
                bits = builder.icmp_signed(iop, x, y)
            return builder.sext(bits, mask.llvm())

        return mask(a, b), codegen

    compare.__doc__ = doc
    return compare


lt = _compare("Mask of a < b (a vector, b a vector or a scalar).", "<", "<")
gt = _compare("Mask of a > b.", ">", ">")
eq = _compare("Mask of a == b.", "==", "==")


@intrinsic
def where(typingctx, mask, a, b):
    """Lane-wise mask ? a : b (mask an I32xN of compare results)."""
    if not (isinstance(mask, VecType) and isinstance(a, VecType) and a == b):
        return None

    def codegen(context, builder, signature, args):
        m, x, y = args
        cond = builder.icmp_signed("!=", m, ir.Constant(m.type, [0] * m.type.count))
        return builder.select(cond, x, y)

    return a(mask, a, b), codegen


def _float_unary(doc, llvm_name):
    @intrinsic
    def unary(typingctx, v):
        if not (isinstance(v, VecType) and v.kind == "f"):
            return None

        def codegen(context, builder, signature, args):
            return _call(builder, f"llvm.{llvm_name}.v{v.count}f32", v.llvm(), [args[0]])

        return v(v), codegen

    unary.__doc__ = doc
    return unary


vabs = _float_unary("|v| lane-wise (F32xN).", "fabs")
vsqrt = _float_unary("Correctly rounded square root lane-wise (F32xN).", "sqrt")


@intrinsic
def float_bits(typingctx, v):
    """The bits of F32xN lanes as I32xN."""
    if not (isinstance(v, VecType) and v.kind == "f"):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], I32[v.count].llvm())

    return I32[v.count](v), codegen


@intrinsic
def bits_f32(typingctx, v):
    """The F32xN whose lanes have the bits of the I32xN lanes (float_bits' inverse)."""
    if not (isinstance(v, VecType) and v.kind == "i" and v.bits == 32):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], F32[v.count].llvm())

    return F32[v.count](v), codegen


@intrinsic
def round_f16(typingctx, v):
    """F32xN lanes rounded to the nearest f16 (ties to even), as float32 again."""
    if not (isinstance(v, VecType) and v.kind == "f"):
        return None

    def codegen(context, builder, signature, args):
        halves = builder.fptrunc(args[0], ir.VectorType(ir.HalfType(), v.count))
        return builder.fpext(halves, v.llvm())

    return v(v), codegen


@intrinsic
def clamp_i32(typingctx, v, lo, hi):
    """min(max(v, lo), hi) lane-wise for I32xN and int scalars."""
    if not (isinstance(v, VecType) and v.kind == "i" and v.bits == 32):
        return None

    def codegen(context, builder, signature, args):
        n = v.count
        lo_v = _splat(
            builder, context.cast(builder, args[1], signature.args[1], types.int32), v.llvm()
        )
        hi_v = _splat(
            builder, context.cast(builder, args[2], signature.args[2], types.int32), v.llvm()
        )
        up = _call(builder, f"llvm.smax.v{n}i32", v.llvm(), [args[0], lo_v])
        return _call(builder, f"llvm.smin.v{n}i32", v.llvm(), [up, hi_v])

    return v(v, lo, hi), codegen


@intrinsic
def lane(typingctx, v, i):
    """Lane i of a vector, as a scalar (float32 or int32)."""
    if not isinstance(v, VecType) or not isinstance(i, types.Integer):
        return None
    scalar = types.float32 if v.kind == "f" else types.int32

    def codegen(context, builder, signature, args):
        index = context.cast(builder, args[1], signature.args[1], types.int32)
        return builder.extract_element(args[0], index)

    return scalar(v, i), codegen
