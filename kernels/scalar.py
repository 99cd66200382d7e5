"""Scalar helpers shared by the Numba kernels: fp16/bf16 bits to float32, little-endian reads."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .inline import inline


@intrinsic
def f16_to_f32(typingctx, bits):
    """IEEE half bits (uint16) to float32, exact (LLVM fpext; F16C where the CPU has it)."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@intrinsic
def f32_to_f16(typingctx, value):
    """float32 to IEEE half bits (uint16), round to nearest even (LLVM fptrunc)."""
    sig = types.uint16(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return sig, codegen


@intrinsic
def bits_to_f32(typingctx, bits):
    """Reinterpret uint32 bits as float32."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def f32_to_bits(typingctx, value):
    """Reinterpret float32 as uint32 bits."""
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@inline
def _u32(v):
    return np.uint32(v)


@inline
def bf16_to_f32(bits):
    """bfloat16 bits to float32 (exact: the top half of a float32)."""
    return bits_to_f32(_u32(bits) << 16)


@inline
def read_f16(buf, offset):
    """float32 value of the little-endian fp16 at buf[offset] (buf: uint8 array)."""
    return f16_to_f32(buf[offset] | (buf[offset + 1] << 8))


@inline
def read_u32(buf, offset):
    """Little-endian uint32 at buf[offset] (buf: uint8 array)."""
    return (
        _u32(buf[offset])
        | (_u32(buf[offset + 1]) << 8)
        | (_u32(buf[offset + 2]) << 16)
        | (_u32(buf[offset + 3]) << 24)
    )
