"""Which instruction-set path the kernels take on this CPU (from the features LLVM reports)."""

from __future__ import annotations

import functools

import llvmlite.binding as llvm

from .amx import request_tiles
from .simd import AVX2, AVX512_AMX, AVX512_VNNI, ISA_NAMES, ISA_TOKENS, PORTABLE
from .static import Static

# CPU features each path compiles to; PORTABLE needs none
_VNNI_FEATURES = ("avx512f", "avx512bw", "avx512vnni", "avx2", "fma", "f16c")
REQUIRED_FEATURES = {
    AVX512_AMX: _VNNI_FEATURES + ("amx-tile", "amx-int8"),
    AVX512_VNNI: _VNNI_FEATURES,
    AVX2: ("avx2", "fma", "f16c"),
    PORTABLE: (),
}


@functools.cache
def host_features() -> frozenset[str]:
    """The CPU features of this machine that LLVM enables ("avx2", "avx512vnni", ...)."""
    return frozenset(name for name, on in llvm.get_host_cpu_features().items() if on)


@functools.cache
def available_isas() -> tuple[str, ...]:
    """The instruction-set paths this machine can run, fastest first (AMX tiles also need
    the operating system's grant, asked for here)."""
    have = host_features()
    return tuple(
        name
        for name in (AVX512_AMX, AVX512_VNNI, AVX2, PORTABLE)
        if all(f in have for f in REQUIRED_FEATURES[name])
        and (name != AVX512_AMX or request_tiles())
    )


def best_isa() -> str:
    return available_isas()[0]


@functools.cache
def isa_token(name: str | None = None) -> Static:
    """The token selecting a path: `name` if given (checked against this CPU), else the best."""
    if name is None:
        return ISA_TOKENS[best_isa()]
    if name not in ISA_NAMES:
        raise ValueError(f"unknown instruction set {name!r}; known: {', '.join(ISA_NAMES)}")
    if name not in available_isas():
        missing = [f for f in REQUIRED_FEATURES[name] if f not in host_features()]
        why = f"it lacks {', '.join(missing)}" if missing else "the OS did not grant AMX tiles"
        raise ValueError(
            f"this CPU cannot run the {name} path ({why}); available: {', '.join(available_isas())}"
        )
    return ISA_TOKENS[name]
