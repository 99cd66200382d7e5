"""AMX tiles (Sapphire Rapids and later) for prompt batches: the intrinsics and the OS grant.

A tile is a 2-D register of up to 16 rows of 64 bytes; tdpbsud multiplies a tile of signed
bytes (A: M rows of K bytes) by one of unsigned bytes (B: K/4 rows of N 4-byte words) into
int32 sums (C: M rows of N words), C[m, n] += sum_k A[m, k] * B[k / 4, 4n + k % 4]: the
same exact integer sums as vpdpbusd, 16 x 16 x 64 per instruction. Tile numbers and shapes
are fixed when a thread loads a configuration (config_tiles), then used by number.

Linux hands out the tile state only on request (arch_prctl ARCH_REQ_XCOMP_PERM); without the
grant the first tile instruction kills the process. request_tiles asks once per process;
cpu_features offers the avx512amx path only where it succeeded.
"""

from __future__ import annotations

import ctypes
import functools
import sys

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

SYS_ARCH_PRCTL = 158  # x86-64
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18

_I8P = ir.IntType(8).as_pointer()
_I8 = ir.IntType(8)


@functools.cache
def request_tiles() -> bool:
    """Ask Linux for this process's permission to use AMX tile data; True if granted."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


def _call(builder, name, args):
    fnty = ir.FunctionType(ir.VoidType(), [a.type for a in args])
    builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), args)


def _address(context, builder, arrty, arr, offset):
    """The address of element `offset` of an array (counted in its elements, from its start)."""
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [offset]), _I8P)


def _tile_numbers(*tiles):
    if all(isinstance(t, types.IntegerLiteral) for t in tiles):
        return [ir.Constant(_I8, t.literal_value) for t in tiles]
    return None


@intrinsic
def config_tiles(typingctx, cfg):
    """Load a tile configuration for this thread: 64 bytes, palette 1 (byte 0), bytes per
    row of tile t as uint16 at byte 16 + 2t, rows of tile t at byte 48 + t."""

    def codegen(context, builder, signature, args):
        start = context.get_constant(types.intp, 0)
        _call(builder, "llvm.x86.ldtilecfg", [_address(context, builder, cfg, args[0], start)])
        return context.get_dummy_value()

    return types.void(cfg), codegen


@intrinsic
def release_tiles(typingctx):
    """Give back this thread's tile state (after its last tile instruction)."""

    def codegen(context, builder, signature, args):
        _call(builder, "llvm.x86.tilerelease", [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def tile_zero(typingctx, tile):
    """Tile `tile` (a literal number) all zeros."""
    numbers = _tile_numbers(tile)
    if numbers is None:
        return None

    def codegen(context, builder, signature, args):
        _call(builder, "llvm.x86.tilezero", numbers)
        return context.get_dummy_value()

    return types.void(tile), codegen


def _mover(name, doc):
    @intrinsic
    def move(typingctx, tile, arr, offset, stride):
        numbers = _tile_numbers(tile)
        if numbers is None:
            return None

        def codegen(context, builder, signature, args):
            address = _address(context, builder, arr, args[1], args[2])
            stride_ = context.cast(builder, args[3], signature.args[3], types.int64)
            _call(builder, name, numbers + [address, stride_])
            return context.get_dummy_value()

        return types.void(tile, arr, types.intp, types.intp), codegen

    move.__doc__ = doc
    return move


tile_load = _mover("llvm.x86.tileloadd64", "tile_load(tile, arr, offset, stride): the tile's rows "
                   "from arr's element `offset` on, `stride` bytes apart.")  # fmt: skip
tile_store = _mover("llvm.x86.tilestored64", "tile_store(tile, arr, offset, stride): the tile's "
                    "rows to arr from element `offset` on, `stride` bytes apart.")  # fmt: skip


def _dot(name, doc):
    @intrinsic
    def dot(typingctx, c, a, b):
        numbers = _tile_numbers(c, a, b)
        if numbers is None:
            return None

        def codegen(context, builder, signature, args):
            _call(builder, name, numbers)
            return context.get_dummy_value()

        return types.void(c, a, b), codegen

    dot.__doc__ = doc
    return dot


tile_dot_su = _dot("llvm.x86.tdpbsud", "C += A . B (tdpbsud): A signed bytes, B unsigned bytes, "
                   "C int32 (tiles by literal number).")  # fmt: skip
tile_dot_ss = _dot("llvm.x86.tdpbssd", "C += A . B (tdpbssd): A and B signed bytes, C int32 "
                   "(tiles by literal number).")  # fmt: skip
