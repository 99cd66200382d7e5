"""`@inline`: the decorator for the kernels' building blocks (code readers, dot shapes, float
helpers), the small functions every kernel is assembled from.

Each building block compiles once per argument types and LLVM inlines it into its callers
(alwaysinline). Numba's own inlining (`inline="always"`) copies and re-types a callee's IR at
every call site, nested ones included: that made the kernel set's cold compile 140 s in one
process, 75 s of it copying IR; this way it is about 65 s, with the same machine code.

Flags a building block does not set are inherited from the kernel that compiles it first, so
fast-math is off explicitly: a block shared with a fast-math kernel must not change the float
order of the exact ones. Blocks are called from Numba code only (no Python wrappers).
"""

from __future__ import annotations

from numba import njit, types
from numba.extending import intrinsic

inline = njit(forceinline=True, fastmath=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)


@intrinsic
def runtime(typingctx, value):
    """An integer constant typed as a plain int64 rather than its literal value. Numba compiles
    a building block once per literal argument (a dot shape's 8 lanes were 8 compiles); called
    with runtime(k), it compiles once, and LLVM still folds the constant once inlined."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], types.int64)

    return types.int64(value), codegen


_UNROLLED = {}


def unrolled(step, n):
    """An @inline function run(first, carry, args) that returns carry after
    `carry = step(i, carry, args)` for i = first .. first + n - 1, every call written out.

    LLVM keeps a loop whose body is large (Q6_K's 8 word parts of a lane) as a loop, with the
    group index, its shifts and its word offsets computed at run time; written out, each
    call's index is a constant and folds away. Halves are shared, so this compiles
    log2(n) + 1 small functions. Not for whole k-quant super-blocks: written out, their
    16 groups made loops of ~4000 instructions whose speed varied 3x between runs."""
    if n == 1:
        return step
    key = (step, n)
    if key not in _UNROLLED:
        low, high = unrolled(step, n // 2), unrolled(step, n - n // 2)
        half = n // 2

        @inline
        def run(first, carry, args):
            return high(first + half, low(first, carry, args), args)

        _UNROLLED[key] = run
    return _UNROLLED[key]
