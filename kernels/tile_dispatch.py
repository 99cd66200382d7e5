"""Dispatch on the weight type for the tiled kernels (tiled.py): which tile_dots shape, and
which accumulator form, each call site compiles.

qtype is a static token: each call site compiles only that type's code. Accumulators are an
F32xN per row vector, a tuple of 8 for SPLIT_SUMS types (ggml's 8 lanes) and a pair for
SPLIT_MIN types (the minimum's sum apart); in the batch kernel they live in memory, 32 floats
per token (acc_load, acc_store, acc_row_total).
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic, overload

from .simd import _isa_lanes, load_f32, store_f32, zeros_f32
from .static import StaticType
from .tile_amx import sign_codes
from .tile_amx_types import DOTS_TILES, FOLDS, LEGACY_OFFSETS, TILE_ROW_SHAPE
from .tile_dots import (
    DOTS,
    DOTS_PAIR,
    DOTS_QUAD,
    DOTS_ROW,
    DOTS_UNPACKED,
    DOTS_UNPACKED_GEMM,
    ROW_UNPACKERS,
    SPLIT_MIN,
    SPLIT_SUMS,
    UNPACKERS,
    VnniOr,
)

# qtype is a static token: each call site compiles only that type's code


def tile_dot(qtype, isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    raise NotImplementedError("only callable from Numba code")


def acc_zero(qtype, isa):
    """A row vector's zero accumulator for tile_dot: F32xN, or 8 of them (SPLIT_SUMS)."""
    raise NotImplementedError("only callable from Numba code")


def acc_total(qtype, isa, facc):
    """The F32xN row results of a tile_dot accumulator."""
    raise NotImplementedError("only callable from Numba code")


def tile_unpack(qtype, isa, qs, sc, dh, tb, lane0, codes_buf, groups_buf, floats_buf):
    raise NotImplementedError("only callable from Numba code")


def tile_dot_unpacked(qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xq, xd, xs, xsum,
                      facc):  # fmt: skip
    raise NotImplementedError("only callable from Numba code")


def _known(qtype) -> bool:
    return isinstance(qtype, StaticType) and qtype.value in DOTS


@overload(tile_dot, inline="always")
def _tile_dot(qtype, isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
    if not _known(qtype):
        return None
    fn = DOTS[qtype.value]
    if isinstance(fn, VnniOr):
        isa_name, _ = _isa_lanes(isa)
        if isa_name is None:
            return None
        fn = fn.pick(isa_name)

    def impl(qtype, isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc):
        return fn(isa, qs, sc, dh, tb, lane0, b, xq, xd, xs, xsum, facc)

    return impl


@overload(tile_unpack, inline="always")
def _tile_unpack(qtype, isa, qs, sc, dh, tb, lane0, codes_buf, groups_buf, floats_buf):
    if not _known(qtype):
        return None
    fn = UNPACKERS[qtype.value]

    def impl(qtype, isa, qs, sc, dh, tb, lane0, codes_buf, groups_buf, floats_buf):
        fn(isa, qs, sc, dh, tb, lane0, codes_buf, groups_buf, floats_buf)

    return impl


@overload(acc_zero, inline="always")
def _acc_zero(qtype, isa):
    if not _known(qtype):
        return None
    if SPLIT_SUMS.get(qtype.value):  # with the minimum's sum

        def impl(qtype, isa):
            z = zeros_f32(isa)
            return z, z, z, z, z, z, z, z, z

        return impl
    if qtype.value in SPLIT_SUMS:

        def impl(qtype, isa):
            z = zeros_f32(isa)
            return z, z, z, z, z, z, z, z

        return impl
    if qtype.value in SPLIT_MIN:

        def impl(qtype, isa):
            z = zeros_f32(isa)
            return z, z

        return impl

    def impl(qtype, isa):
        return zeros_f32(isa)

    return impl


@overload(acc_total, inline="always")
def _acc_total(qtype, isa, facc):
    if not _known(qtype):
        return None
    if SPLIT_SUMS.get(qtype.value):

        def impl(qtype, isa, facc):  # hsum_float_8's pairing of the 8 lanes, then summs
            f0, f1, f2, f3, f4, f5, f6, f7, fm = facc
            return (((f0 + f4) + (f2 + f6)) + ((f1 + f5) + (f3 + f7))) + fm

        return impl
    if qtype.value in SPLIT_SUMS:

        def impl(qtype, isa, facc):  # hsum_float_8's pairing of the 8 lanes
            f0, f1, f2, f3, f4, f5, f6, f7 = facc
            return ((f0 + f4) + (f2 + f6)) + ((f1 + f5) + (f3 + f7))

        return impl
    if qtype.value in SPLIT_MIN:

        def impl(qtype, isa, facc):
            f, fm = facc
            return f - fm

        return impl

    def impl(qtype, isa, facc):
        return facc

    return impl


@overload(tile_dot_unpacked, inline="always")
def _tile_dot_unpacked(qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xq, xd, xs,
                       xsum, facc):  # fmt: skip
    if not _known(qtype):
        return None
    fn = DOTS_UNPACKED[qtype.value]

    def impl(qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xq, xd, xs, xsum, facc):
        return fn(isa, codes_buf, groups_buf, floats_buf, 0, lane0, b, xq, xd, xs, xsum, facc)

    return impl


def acc_load(qtype, isa, row, lane0):
    """A token's tile accumulator from memory (row: 32 floats; the second 16 hold SPLIT_MIN's
    minimum sums)."""
    raise NotImplementedError("only callable from Numba code")


def acc_store(qtype, row, lane0, facc):
    raise NotImplementedError("only callable from Numba code")


@overload(acc_load, inline="always")
def _acc_load(qtype, isa, row, lane0):
    if not _known(qtype):
        return None
    if qtype.value in SPLIT_MIN:

        def impl(qtype, isa, row, lane0):
            return load_f32(isa, row, lane0), load_f32(isa, row, 16 + lane0)

        return impl

    def impl(qtype, isa, row, lane0):
        return load_f32(isa, row, lane0)

    return impl


@overload(acc_store, inline="always")
def _acc_store(qtype, row, lane0, facc):
    if not _known(qtype):
        return None
    if qtype.value in SPLIT_MIN:

        def impl(qtype, row, lane0, facc):
            store_f32(row, lane0, facc[0])
            store_f32(row, 16 + lane0, facc[1])

        return impl

    def impl(qtype, row, lane0, facc):
        store_f32(row, lane0, facc)

    return impl


def acc_row_total(qtype, isa, row, lane0):
    """The F32xN results of a token's tile accumulator in memory (see acc_load)."""
    raise NotImplementedError("only callable from Numba code")


@overload(acc_row_total, inline="always")
def _acc_row_total(qtype, isa, row, lane0):
    if not _known(qtype):
        return None
    if qtype.value in SPLIT_MIN:

        def impl(qtype, isa, row, lane0):
            return load_f32(isa, row, lane0) - load_f32(isa, row, 16 + lane0)

        return impl

    def impl(qtype, isa, row, lane0):
        return load_f32(isa, row, lane0)

    return impl


def tile_dot_unpacked_gemm(qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xq, xd, xs,
                           xsum, facc):  # fmt: skip
    """tile_dot_unpacked for the tokens llama.cpp's repacked gemm sums (SPLIT_MIN types);
    the same as tile_dot_unpacked for the others."""
    raise NotImplementedError("only callable from Numba code")


@overload(tile_dot_unpacked_gemm, inline="always")
def _tile_dot_unpacked_gemm(qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xq, xd, xs,
                            xsum, facc):  # fmt: skip
    if not _known(qtype):
        return None
    fn = DOTS_UNPACKED_GEMM.get(qtype.value, DOTS_UNPACKED.get(qtype.value))

    def impl(qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xq, xd, xs, xsum, facc):
        return fn(isa, codes_buf, groups_buf, floats_buf, 0, lane0, b, xq, xd, xs, xsum, facc)

    return impl


def tile_dot_unpacked_pair(qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xa, xb, fa,
                           fb):  # fmt: skip
    """tile_dot_unpacked for two tokens at once: xa, xb are (xq, xd, xs, xsum) of each, fa, fb
    their accumulators; returns both."""
    raise NotImplementedError("only callable from Numba code")


@overload(tile_dot_unpacked_pair, inline="always")
def _tile_dot_unpacked_pair(qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xa, xb, fa,
                            fb):  # fmt: skip
    if not _known(qtype):
        return None
    if qtype.value not in DOTS_PAIR:  # never called (has_pair_shape), but must type

        def impl(qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xa, xb, fa, fb):
            return fa, fb

        return impl
    fn = DOTS_PAIR[qtype.value]  # 32-weight types: no group scales

    def impl(qtype, isa, codes_buf, groups_buf, floats_buf, lane0, b, xa, xb, fa, fb):
        return fn(isa, codes_buf, floats_buf, lane0, b, xa, xb, fa, fb)

    return impl


def _has_shape(table: dict, doc: str):
    """An intrinsic telling whether qtype is in table, as a compile-time constant."""

    @intrinsic
    def has_shape(typingctx, qtype):
        if not isinstance(qtype, StaticType):
            return None
        value = qtype.value in table

        def codegen(context, builder, signature, args):
            return context.get_constant(types.boolean, value)

        return types.boolean(qtype), codegen

    has_shape.__doc__ = doc
    return has_shape


has_pair_shape = _has_shape(DOTS_PAIR, "Whether qtype's unpacked blocks have a two-token shape.")
has_quad_shape = _has_shape(DOTS_QUAD, "Whether qtype's unpacked blocks have a four-token shape.")
has_tile_shape = _has_shape(DOTS_TILES, "Whether qtype's unpacked blocks have an AMX tile shape.")


@intrinsic
def tile_row_words(typingctx, qtype):
    """(code words, group words, activation bytes per tile dot) of a tile block of qtype
    unpacked for the AMX tile rows (tile_amx), as compile-time constants."""
    if not isinstance(qtype, StaticType):
        return None
    values = TILE_ROW_SHAPE.get(qtype.value, (0, 0, 32))

    def codegen(context, builder, signature, args):
        return context.make_tuple(builder, signature.return_type,
                                  [context.get_constant(types.intp, v) for v in values])  # fmt: skip

    return types.UniTuple(types.intp, 3)(qtype), codegen


def tile_row_finish(qtype, isa, codes_row, groups_row):
    """The unpacked tile row as its AMX shape reads it: tile_amx.sign_codes for types with
    a code offset, tile_amx.fold_scales for the k-quants whose scales fold into the codes."""
    raise NotImplementedError("only callable from Numba code")


@overload(tile_row_finish, inline="always")
def _tile_row_finish(qtype, isa, codes_row, groups_row):
    if not _known(qtype):
        return None
    offset = LEGACY_OFFSETS.get(qtype.value, 0)
    if qtype.value in FOLDS:
        fold = FOLDS[qtype.value]

        def impl(qtype, isa, codes_row, groups_row):
            fold(isa, codes_row, groups_row)

        return impl

    def impl(qtype, isa, codes_row, groups_row):
        if offset:
            sign_codes(codes_row, codes_row.size, offset)

    return impl


def tile_rows_tiles(
    qtype, isa, codes_row, groups_row, floats_row, gq, gd, gs, gsum, cbuf, fbuf, out, tok, col
):
    """out[tok .. tok + 15, col .. col + 15] from a whole unpacked tile row on AMX tiles
    (tile_amx.py), the 16 tokens' activations group-major (tiled.group_major)."""
    raise NotImplementedError("only callable from Numba code")


@overload(tile_rows_tiles, inline="always")
def _tile_rows_tiles(
    qtype, isa, codes_row, groups_row, floats_row, gq, gd, gs, gsum, cbuf, fbuf, out, tok, col
):
    if not _known(qtype):
        return None
    if qtype.value not in DOTS_TILES:  # never called (has_tile_shape), but must type

        def impl(
            qtype,
            isa,
            codes_row,
            groups_row,
            floats_row,
            gq,
            gd,
            gs,
            gsum,
            cbuf,
            fbuf,
            out,
            tok,
            col,
        ):
            pass

        return impl
    fn = DOTS_TILES[qtype.value]

    def impl(
        qtype, isa, codes_row, groups_row, floats_row, gq, gd, gs, gsum, cbuf, fbuf, out, tok, col
    ):
        fn(isa, codes_row, groups_row, floats_row, gq, gd, gs, gsum, cbuf, fbuf, out, tok, col)

    return impl


def tile_dot_unpacked_quad(qtype, isa, codes_buf, groups_buf, floats_buf, xq, xd, xs, xsum, acc,
                           tok):  # fmt: skip
    """tile_dot_unpacked for tokens tok .. tok + 3 at once (tile_quads.py), their
    accumulators in acc (batch_task's rows), their activations of the block's position
    token by token (tiled.block_major); AVX-512 VNNI only (simd.many_registers)."""
    raise NotImplementedError("only callable from Numba code")


@overload(tile_dot_unpacked_quad, inline="always")
def _tile_dot_unpacked_quad(qtype, isa, codes_buf, groups_buf, floats_buf, xq, xd, xs, xsum, acc,
                            tok):  # fmt: skip
    if not _known(qtype):
        return None
    if qtype.value not in DOTS_QUAD:  # never called (has_quad_shape), but must type

        def impl(qtype, isa, codes_buf, groups_buf, floats_buf, xq, xd, xs, xsum, acc, tok):
            pass

        return impl
    fn = DOTS_QUAD[qtype.value]

    def impl(qtype, isa, codes_buf, groups_buf, floats_buf, xq, xd, xs, xsum, acc, tok):
        fn(isa, codes_buf, groups_buf, floats_buf, xq, xd, xs, xsum, acc, tok)

    return impl


def tile_unpack_row(qtype, isa, qs, dh, t, n_blocks, lane0, codes_row, floats_row):
    """Unpacks rows lane0.. of tile t's blocks into row buffers (8-lane types; see
    tile_dots' unpacked rows)."""
    raise NotImplementedError("only callable from Numba code")


def tile_dot_row(qtype, isa, codes_row, floats_row, b, lane0, xq, xd, xs, xsum, facc):
    """tile_dot on block b of the unpacked row buffers."""
    raise NotImplementedError("only callable from Numba code")


@overload(tile_unpack_row, inline="always")
def _tile_unpack_row(qtype, isa, qs, dh, t, n_blocks, lane0, codes_row, floats_row):
    if not _known(qtype):
        return None
    if qtype.value not in ROW_UNPACKERS:  # never called (has_row_shape), but must type

        def impl(qtype, isa, qs, dh, t, n_blocks, lane0, codes_row, floats_row):
            pass

        return impl
    fn = ROW_UNPACKERS[qtype.value]

    def impl(qtype, isa, qs, dh, t, n_blocks, lane0, codes_row, floats_row):
        fn(isa, qs, dh, t, n_blocks, lane0, codes_row, floats_row)

    return impl


@overload(tile_dot_row, inline="always")
def _tile_dot_row(qtype, isa, codes_row, floats_row, b, lane0, xq, xd, xs, xsum, facc):
    if not _known(qtype):
        return None
    if qtype.value not in DOTS_ROW:

        def impl(qtype, isa, codes_row, floats_row, b, lane0, xq, xd, xs, xsum, facc):
            return facc

        return impl
    fn = DOTS_ROW[qtype.value]

    def impl(qtype, isa, codes_row, floats_row, b, lane0, xq, xd, xs, xsum, facc):
        return fn(isa, codes_row, codes_row, floats_row, b, lane0, b, xq, xd, xs, xsum, facc)

    return impl


has_row_shape = _has_shape(DOTS_ROW, "Whether qtype's batches run on unpacked rows.")
