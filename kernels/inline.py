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

from numba import njit

inline = njit(forceinline=True, fastmath=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
