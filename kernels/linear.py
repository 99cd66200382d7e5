"""The linear-layer API the runtime builds on: pack a weight once, then matvec / matmul / rows.

    w = pack_weight(raw, ggml_type, n_in)   # raw: (n_out, row_bytes) uint8 blocks, or floats
    matvec(w, x, out)                       # x (n_in,) -> out (n_out,)        decode
    matmul(w, X, out)                       # X (n_tok, n_in) -> out (n_tok, n_out)  prefill
    get_rows(w, ids, out)                   # out (len(ids), n_in): embedding lookup
    dequantize(w), dequantize_row(w, i)     # bit-exact with the numpy reference

Weights are repacked into 16-row tiles (repack.py); the rows past the last whole tile stay
in file layout and go through the portable row kernels. Activations are quantized once per
call to 8-bit blocks (Q8_0/Q8_1 for the 32-weight block types, Q8_K for k-quants) and dotted
with the weight codes in integers, scaled in float, as ggml's vec_dot_<w>_<q8> do; F16/BF16
weights see activations rounded to their type. `isa` selects the instruction-set path
("avx512amx", "avx512vnni", "avx2", "portable"); None takes the best this CPU runs.
"""

from __future__ import annotations

import numba
import numpy as np

from ..formats.ggml_types import TYPE_INFO, GGMLType, ggml_type, row_nbytes
from .cpu_features import isa_token
from .dequantize import dequantize_rows
from .ggml_sums import V8
from .quantize_activations import INPUT_FORMAT
from .repack import TILE, layout_table, tile_blocks, untile_rows
from .rows_f16 import f16_row_task, linear_f16
from .simd import AVX2, ISA_TOKENS, isa_variant
from .static import DirectCall, static
from .tile_dots import SPLIT_SUMS, TILED_FROM, TILED_ORDER
from .tiled import (
    BATCH,
    BATCH_FROM,
    FLOAT_BF16,
    FLOAT_F32,
    HALVES,
    ONE_TOKEN,
    block_task,
    float_tile_task,
    linear_float,
    linear_tail,
    quantize_task,
    run_block_tiles,
)

BLOCK_TYPES = (
    GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0,
    GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
)  # fmt: skip
FLOAT_TYPES = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)
SUPPORTED_TYPES = BLOCK_TYPES + FLOAT_TYPES
K_QUANTS = (GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K)
_FLOAT_KIND = {GGMLType.F32: FLOAT_F32, GGMLType.BF16: FLOAT_BF16}
_FLOAT_DTYPE = {GGMLType.F32: np.float32, GGMLType.F16: np.uint16, GGMLType.BF16: np.uint16}


def set_num_threads(n: int) -> None:
    """Threads used by every kernel (Numba's pool; at most the number it started with)."""
    numba.set_num_threads(int(n))


def get_num_threads() -> int:
    return numba.get_num_threads()


class PackedWeight:
    """One weight matrix (n_out rows of n_in weights) in the form the kernels read.

    Block types: the fields of repack.Tiles as flat arrays (`quants`, `scales`, `halves`) and
    `tail` (n_out % 16, row_bytes). F32/BF16: `float_tiles` flat (n_tiles, n_in, 16)
    float32 / uint16 bits and `float_tail` (n_out % 16, n_in). F16 keeps the file's row
    layout, all of it in `float_tail` (rows_f16.py). `nbytes` equals the file's.
    """

    __slots__ = ("ggml_type", "n_out", "n_in", "quants", "scales", "halves", "tail",
                 "float_tiles", "float_tail", "qtype_token", "input_token", "_table")  # fmt: skip

    def __init__(self, ggml_type: GGMLType, n_out: int, n_in: int):
        self.ggml_type = ggml_type
        self.n_out = n_out
        self.n_in = n_in
        self.qtype_token = static(int(ggml_type))
        # the activation format's token, for run_block_tiles (quantize_activations)
        self.input_token = static(int(INPUT_FORMAT.get(ggml_type, ggml_type)))
        self.quants = self.scales = self.halves = self.tail = None
        self.float_tiles = self.float_tail = None
        self._table = None

    @property
    def n_tiles(self) -> int:
        if self.ggml_type == GGMLType.F16:
            return 0  # row layout
        return self.n_out // TILE

    @property
    def nbytes(self) -> int:
        parts = (
            self.quants,
            self.scales,
            self.halves,
            self.tail,
            self.float_tiles,
            self.float_tail,
        )
        return int(sum(p.nbytes for p in parts if p is not None))

    def __repr__(self) -> str:
        return f"PackedWeight({self.ggml_type.name}, n_out={self.n_out}, n_in={self.n_in})"


def pack_weight(raw: np.ndarray, ggml_type_: int | str | GGMLType, n_in: int) -> PackedWeight:
    """The packed (tiled) form of one weight matrix; raw is not kept.

    raw: (n_out, row_bytes) uint8 GGUF blocks (a zero-copy view is fine), or for F32/F16/BF16
    a (n_out, n_in) array of float32 / float16 / uint16 (bf16 bits) or its uint8 bytes.
    """
    t = ggml_type(ggml_type_)
    if t not in SUPPORTED_TYPES:
        names = ", ".join(s.name for s in SUPPORTED_TYPES)
        raise ValueError(f"no kernels for GGML type {t.name}; supported: {names}")
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"weight must be 2-D (n_out, row), got shape {raw.shape}")
    n_out = raw.shape[0]
    n_bytes = row_nbytes(t, n_in)  # raises if n_in is not a whole number of blocks
    if t in BLOCK_TYPES:
        if raw.dtype != np.uint8 or raw.shape[1] != n_bytes:
            raise ValueError(
                f"{t.name} weight of {n_in} per row must be uint8 (n_out, {n_bytes}), "
                f"got {raw.dtype} {raw.shape}"
            )
        w = PackedWeight(t, n_out, n_in)
        tiles = tile_blocks(raw, t)
        w.quants, w.scales = tiles.quants.reshape(-1), tiles.scales.reshape(-1)
        w.halves, w.tail = tiles.halves.reshape(-1), tiles.tail
        w._table = layout_table(t)
        return w
    want = _FLOAT_DTYPE[t]
    if raw.dtype == np.uint8 and raw.shape[1] == n_bytes:
        raw = np.ascontiguousarray(raw).view(want)
    elif t == GGMLType.F16 and raw.dtype == np.float16:
        raw = raw.view(np.uint16)
    if raw.dtype != want or raw.shape[1] != n_in:
        raise ValueError(
            f"{t.name} weight must be (n_out, {n_in}) {np.dtype(want)}, got {raw.dtype} {raw.shape}"
        )
    w = PackedWeight(t, n_out, n_in)
    if t == GGMLType.F16:  # row layout: the rows_f16 kernels sum along rows, as ggml does
        w.float_tiles = np.empty(0, want)
        w.float_tail = np.array(raw, copy=True)
        return w
    n_tiled = n_out // TILE * TILE
    w.float_tiles = np.ascontiguousarray(raw[:n_tiled].reshape(-1, TILE, n_in).transpose(0, 2, 1))
    w.float_tiles = w.float_tiles.reshape(-1)
    w.float_tail = np.array(raw[n_tiled:], copy=True)
    return w


# types whose one-token kernel runs 8 rows per vector on AVX2 (linear_blocks_halves): Q6_K's
# 8 float sums per row (ggml's lanes) filled the 16 ymm registers at 16 rows, and its words
# spilled (tile_dots.q6_k_exact_shape); _NARROWED: isa token -> the token they run with
NARROW_TYPES = {int(GGMLType.Q6_K)}
_NARROWED = {ISA_TOKENS[AVX2]: isa_variant(AVX2, 8)}


_run_block_tiles = DirectCall(run_block_tiles)
_linear_tail = DirectCall(linear_tail)
_linear_float = DirectCall(linear_float)
_linear_f16 = DirectCall(linear_f16)
_untile_rows = DirectCall(untile_rows)
_dequantize_rows = DirectCall(dequantize_rows)


def _one_token_task(t: int, token, qtype) -> int:
    """block_task running block type t (static qtype) one token at a time."""
    if t in NARROW_TYPES and token in _NARROWED:
        return block_task(HALVES, _NARROWED[token], qtype)
    return block_task(ONE_TOKEN, token, qtype)


def _check_matmul(w: PackedWeight, x: np.ndarray, out: np.ndarray) -> None:
    # the kernels are called without Numba's type dispatch: types and layouts are checked here
    if not (
        isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2
        and x.shape[1] == w.n_in and x.flags.c_contiguous
    ):  # fmt: skip
        raise ValueError(
            f"X must be a C-contiguous float32 array (n_tok, {w.n_in}), got "
            f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
        )
    if not (
        isinstance(out, np.ndarray) and out.dtype == np.float32
        and out.shape == (x.shape[0], w.n_out) and out.flags.c_contiguous and out.flags.writeable
    ):  # fmt: skip
        raise ValueError(
            f"out must be a writable C-contiguous float32 array {(x.shape[0], w.n_out)}, got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )


def matmul(w: PackedWeight, x: np.ndarray, out: np.ndarray, isa: str | None = None) -> None:
    """out[t] = W @ x[t] for every token; x (n_tok, n_in) float32, out (n_tok, n_out) float32."""
    _check_matmul(w, x, out)
    if w.quants is not None:
        token = isa_token(isa)
        t = int(w.ggml_type)
        tiled_batch = t in TILED_ORDER and x.shape[0] >= TILED_FROM  # llama.cpp's order there
        one_at_a_time = x.shape[0] < BATCH_FROM or (t in SPLIT_SUMS and not tiled_batch)
        if one_at_a_time:
            task = _one_token_task(t, token, w.qtype_token)
        else:
            task = block_task(BATCH, token, w.qtype_token)
        _run_block_tiles(w.input_token, task, quantize_task(), w.input_token, w.n_tiles,
                         w.quants, w.scales, w.halves, x, out)  # fmt: skip
        if w.tail.shape[0]:
            _linear_tail(w.qtype_token, w.qtype_token, w.tail, x, out)
    elif w.ggml_type == GGMLType.F16:
        _linear_f16(V8, f16_row_task(V8), w.float_tail, x, out)
    else:
        token = isa_token(isa)
        kind = _FLOAT_KIND[w.ggml_type]
        _linear_float(kind, float_tile_task(token, kind), kind, w.float_tiles, w.float_tail, x, out)


def one_token_runner(w: PackedWeight, isa: str | None = None):
    """run(x, out): matmul(w, x, out) for one token, x (1, n_in) and out (1, n_out), without
    matmul's checks and choices, made once here. For a model's decode loop, where the arrays
    are its own C-contiguous float32 buffers: the checks cost as much as a small kernel's work
    (a 135M model makes 120 such calls per token)."""
    if w.quants is not None:
        qtype = w.qtype_token
        task = _one_token_task(int(w.ggml_type), isa_token(isa), qtype)
        fmt = w.input_token
        fixed, tail = (task, quantize_task(), fmt, w.n_tiles, w.quants, w.scales, w.halves), w.tail

        def run(x: np.ndarray, out: np.ndarray) -> None:
            _run_block_tiles(fmt, *fixed, x, out)
            if tail.shape[0]:
                _linear_tail(qtype, qtype, tail, x, out)

    elif w.ggml_type == GGMLType.F16:
        rows, task = w.float_tail, f16_row_task(V8)

        def run(x: np.ndarray, out: np.ndarray) -> None:
            _linear_f16(V8, task, rows, x, out)

    else:
        kind = _FLOAT_KIND[w.ggml_type]
        fixed = (float_tile_task(isa_token(isa), kind), kind, w.float_tiles, w.float_tail)

        def run(x: np.ndarray, out: np.ndarray) -> None:
            _linear_float(kind, *fixed, x, out)

    return run


def matvec(w: PackedWeight, x: np.ndarray, out: np.ndarray, isa: str | None = None) -> None:
    """out = W @ x; x (n_in,) float32, out (n_out,) float32."""
    if x.ndim != 1 or out.ndim != 1:
        raise ValueError(f"matvec takes 1-D x and out, got {x.shape} and {out.shape}")
    matmul(w, x.reshape(1, -1), out.reshape(1, -1), isa)


def get_rows(w: PackedWeight, ids: np.ndarray, out: np.ndarray) -> None:
    """out[i] = dequantized row ids[i] of W; out (len(ids), n_in) float32."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    if out.dtype != np.float32 or out.shape != (ids.size, w.n_in):
        raise ValueError(f"out must be float32 {(ids.size, w.n_in)}, got {out.dtype} {out.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= w.n_out):
        raise IndexError(f"row ids must be in [0, {w.n_out}), got {ids.min()}..{ids.max()}")
    ids = ids.astype(np.int64)
    t = w.ggml_type
    n_tiled = w.n_tiles * TILE
    if w.quants is not None:
        info = TYPE_INFO[t]
        blocks = np.empty((ids.size, row_nbytes(t, w.n_in)), np.uint8)  # the rows' file blocks
        _untile_rows((), n_tiled, w.n_in // info.block_size, info.type_size, w.quants, w.scales,
                     w.halves, w._table, w.tail, ids, blocks)  # fmt: skip
        _dequantize_rows(w.qtype_token, w.qtype_token, blocks, np.arange(ids.size), out)
        return
    rows = np.empty((ids.size, w.n_in), _FLOAT_DTYPE[t])
    tiled = ids < n_tiled
    tiles = w.float_tiles.reshape(-1, w.n_in, TILE)
    rows[tiled] = tiles[ids[tiled] // TILE, :, ids[tiled] % TILE]
    rows[~tiled] = w.float_tail[ids[~tiled] - n_tiled]
    if t == GGMLType.F32:
        out[:] = rows
    else:
        _dequantize_rows(w.qtype_token, w.qtype_token, rows, np.arange(ids.size), out)


def dequantize(w: PackedWeight) -> np.ndarray:
    """The whole matrix as float32 (n_out, n_in)."""
    out = np.empty((w.n_out, w.n_in), np.float32)
    get_rows(w, np.arange(w.n_out), out)
    return out


def dequantize_row(w: PackedWeight, row: int) -> np.ndarray:
    """Row `row` of W as float32 (n_in,)."""
    out = np.empty((1, w.n_in), np.float32)
    get_rows(w, np.array([row]), out)
    return out[0]
