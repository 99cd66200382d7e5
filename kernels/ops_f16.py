"""Half-precision conversion inside Numba code.

Numba has no float16 type on the CPU, so f16 data (the KV cache) lives in uint16 arrays and
these two intrinsics convert one value with LLVM's own `fpext` / `fptrunc`. Inside a loop
LLVM vectorizes them into the CPU's half-conversion instructions (F16C: vcvtph2ps/vcvtps2ph),
and rounding is IEEE round-to-nearest-even, the same as numpy's and ggml's.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def f16_to_f32(typingctx, bits):
    """float32 value of the IEEE half whose bits are `bits` (uint16)."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        half = builder.bitcast(args[0], ir.HalfType())
        return builder.fpext(half, ir.FloatType())

    return sig, codegen


@intrinsic
def f32_to_f16(typingctx, value):
    """Bits (uint16) of the IEEE half nearest to the float32 `value`."""
    sig = types.uint16(types.float32)

    def codegen(context, builder, signature, args):
        half = builder.fptrunc(args[0], ir.HalfType())
        return builder.bitcast(half, ir.IntType(16))

    return sig, codegen


def to_f16_bits(a: np.ndarray) -> np.ndarray:
    """numpy: float array -> uint16 bits of its float16 rounding (for tests and setup)."""
    with np.errstate(over="ignore"):  # beyond 65504 rounds to inf, as the hardware does
        return np.asarray(a, dtype=np.float32).astype(np.float16).view(np.uint16)


def from_f16_bits(bits: np.ndarray) -> np.ndarray:
    """numpy: uint16 half bits -> float32."""
    return np.asarray(bits, dtype=np.uint16).view(np.float16).astype(np.float32)
