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
("avx512vnni", "avx2", "portable"); None takes the best this CPU runs.
"""

from __future__ import annotations

import numba
import numpy as np

from ..formats.ggml_types import TYPE_INFO, GGMLType, ggml_type, row_nbytes
from .cpu_features import isa_token
from .dequantize import dequantize_rows_half
from .dot_rows import matmul_float_rows, matmul_half_rows, matmul_rows
from .quantize_activations import Activations, quantize_activations
from .repack import TILE, Tiles, dequantize_tiled_rows, layout_table, tile_blocks
from .tiled import FLOAT_BF16, FLOAT_F16, FLOAT_F32, matmul_float_tiles, matmul_tiles

BLOCK_TYPES = (
    GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0,
    GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
)  # fmt: skip
FLOAT_TYPES = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)
SUPPORTED_TYPES = BLOCK_TYPES + FLOAT_TYPES
K_QUANTS = (GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K)
_FLOAT_KIND = {GGMLType.F32: FLOAT_F32, GGMLType.F16: FLOAT_F16, GGMLType.BF16: FLOAT_BF16}
_FLOAT_DTYPE = {GGMLType.F32: np.float32, GGMLType.F16: np.uint16, GGMLType.BF16: np.uint16}


def set_num_threads(n: int) -> None:
    """Threads used by every kernel (Numba's pool; at most the number it started with)."""
    numba.set_num_threads(int(n))


def get_num_threads() -> int:
    return numba.get_num_threads()


class PackedWeight:
    """One weight matrix (n_out rows of n_in weights) in the form the kernels read.

    Block types: `tiles` (repack.Tiles). Float types: `float_tiles` (n_tiles, n_in, 16)
    float32 / uint16 bits and `float_tail` (n_out % 16, n_in). `nbytes` equals the file's.
    """

    __slots__ = ("ggml_type", "n_out", "n_in", "tiles", "float_tiles", "float_tail", "_table")

    def __init__(self, ggml_type, n_out, n_in, tiles=None, float_tiles=None, float_tail=None):
        self.ggml_type = ggml_type
        self.n_out = n_out
        self.n_in = n_in
        self.tiles = tiles
        self.float_tiles = float_tiles
        self.float_tail = float_tail
        self._table = layout_table(ggml_type) if tiles is not None else None

    @property
    def n_tiles(self) -> int:
        return self.n_out // TILE

    @property
    def nbytes(self) -> int:
        if self.tiles is not None:
            return self.tiles.nbytes
        return int(self.float_tiles.nbytes + self.float_tail.nbytes)

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
        return PackedWeight(t, n_out, n_in, tiles=tile_blocks(raw, t))
    want = _FLOAT_DTYPE[t]
    if raw.dtype == np.uint8 and raw.shape[1] == n_bytes:
        raw = np.ascontiguousarray(raw).view(want)
    elif t == GGMLType.F16 and raw.dtype == np.float16:
        raw = raw.view(np.uint16)
    if raw.dtype != want or raw.shape[1] != n_in:
        raise ValueError(
            f"{t.name} weight must be (n_out, {n_in}) {np.dtype(want)}, got {raw.dtype} {raw.shape}"
        )
    n_tiled = n_out // TILE * TILE
    tiles = np.ascontiguousarray(raw[:n_tiled].reshape(-1, TILE, n_in).transpose(0, 2, 1))
    tail = np.array(raw[n_tiled:], copy=True)
    return PackedWeight(t, n_out, n_in, float_tiles=tiles, float_tail=tail)


def _round_to_half(x: np.ndarray, t: GGMLType) -> np.ndarray:
    """Activations rounded to the weight's half type, as ggml converts them for F16/BF16."""
    if t == GGMLType.F16:
        return x.astype(np.float16).astype(np.float32)
    bits = x.view(np.uint32)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) & np.uint32(0xFFFF0000)
    return np.where(np.isnan(x), x, rounded.view(np.float32))


def quantize_input(w: PackedWeight, x: np.ndarray) -> Activations | np.ndarray:
    """x (n_tok, n_in) in the form w's kernels take; reuse it for weights of the same family."""
    t = w.ggml_type
    if t == GGMLType.F32:
        return x
    if t in FLOAT_TYPES:
        return _round_to_half(x, t)
    return quantize_activations(x, t in K_QUANTS)


def _check_matmul(w: PackedWeight, x: np.ndarray, out: np.ndarray) -> None:
    if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != w.n_in or not x.flags.c_contiguous:
        raise ValueError(
            f"X must be C-contiguous float32 (n_tok, {w.n_in}), got {x.dtype} {x.shape}"
        )
    if out.dtype != np.float32 or out.shape != (x.shape[0], w.n_out) or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be C-contiguous float32 {(x.shape[0], w.n_out)}, got {out.dtype} {out.shape}"
        )


def matmul(w: PackedWeight, x: np.ndarray, out: np.ndarray, isa: str | None = None) -> None:
    """out[t] = W @ x[t] for every token; x (n_tok, n_in) float32, out (n_tok, n_out) float32."""
    _check_matmul(w, x, out)
    token = isa_token(isa)
    t = w.ggml_type
    n_tiled = w.n_tiles * TILE
    tail_out = out[:, n_tiled:]
    xin = quantize_input(w, x)
    if t in FLOAT_TYPES:
        matmul_float_tiles(_FLOAT_KIND[t], w.n_tiles, w.float_tiles.reshape(-1), xin, out)
        if w.float_tail.shape[0]:
            if t == GGMLType.F32:
                matmul_float_rows(w.float_tail, xin, tail_out)
            else:
                matmul_half_rows(t == GGMLType.BF16, w.float_tail, xin, tail_out)
        return
    tiles: Tiles = w.tiles
    xq32 = xin.xq.view(np.int32)
    matmul_tiles(token, int(t), w.n_tiles, tiles.quants.reshape(-1), tiles.scales.reshape(-1),
                 tiles.halves.reshape(-1), w.n_in // TYPE_INFO[t].block_size, xq32, xin.xd,
                 xin.xs, xin.xsum, out)  # fmt: skip
    if tiles.tail.shape[0]:
        matmul_rows(int(t), tiles.tail, xin.xq, xin.xd, xin.xs, xin.xsum, tail_out)


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
    if t in FLOAT_TYPES:
        rows = np.empty((ids.size, w.n_in), _FLOAT_DTYPE[t])
        tiled = ids < n_tiled
        rows[tiled] = w.float_tiles[ids[tiled] // TILE, :, ids[tiled] % TILE]
        rows[~tiled] = w.float_tail[ids[~tiled] - n_tiled]
        if t == GGMLType.F32:
            out[:] = rows
        else:
            dequantize_rows_half(t == GGMLType.BF16, rows, np.arange(ids.size), out)
        return
    tiles: Tiles = w.tiles
    info = TYPE_INFO[t]
    dequantize_tiled_rows(int(t), n_tiled, w.n_in // info.block_size, info.type_size,
                          tiles.quants.reshape(-1), tiles.scales.reshape(-1),
                          tiles.halves.reshape(-1), w._table, tiles.tail, ids, out)  # fmt: skip


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
