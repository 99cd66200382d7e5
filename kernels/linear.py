"""The linear-layer API the runtime builds on: pack a weight once, then matvec / matmul / rows.

    w = pack_weight(raw, ggml_type, n_in)   # raw: (n_out, row_bytes) uint8 blocks, or floats
    matvec(w, x, out)                       # x (n_in,) -> out (n_out,)        decode
    matmul(w, X, out)                       # X (n_tok, n_in) -> out (n_tok, n_out)  prefill
    get_rows(w, ids, out)                   # out (len(ids), n_in): embedding lookup
    dequantize(w), dequantize_row(w, i)     # bit-exact with the numpy reference

Activations are quantized once per call to 8-bit blocks (Q8_0/Q8_1 for the 32-weight block
types, Q8_K for k-quants) and dotted with the weight blocks in integers, scaled in float,
as ggml's vec_dot_<w>_<q8> do; F16 / BF16 weights see activations rounded to their type.
"""

from __future__ import annotations

import numba
import numpy as np

from ..formats.ggml_types import QK_K, TYPE_INFO, GGMLType, ggml_type, row_nbytes
from .dequantize import dequantize_rows_blocks, dequantize_rows_half
from .dot_rows import matmul_float_rows, matmul_half_rows, matmul_rows
from .quantize_activations import quantize_activations

BLOCK_TYPES = (
    GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0,
    GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
)  # fmt: skip
FLOAT_TYPES = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)
SUPPORTED_TYPES = BLOCK_TYPES + FLOAT_TYPES
K_QUANTS = (GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K)


def set_num_threads(n: int) -> None:
    """Threads used by every kernel (Numba's thread pool; at most the number it started with)."""
    numba.set_num_threads(int(n))


def get_num_threads() -> int:
    return numba.get_num_threads()


class PackedWeight:
    """One weight matrix (n_out rows of n_in weights) in the form the kernels read.

    Block types keep ggml's blocks; float types keep (n_out, n_in) arrays (F16/BF16 as uint16
    bits). `nbytes` is the memory the weight holds, never more than the file's bytes.
    """

    __slots__ = ("ggml_type", "n_out", "n_in", "blocks", "values")

    def __init__(self, ggml_type, n_out, n_in, blocks=None, values=None):
        self.ggml_type = ggml_type
        self.n_out = n_out
        self.n_in = n_in
        self.blocks = blocks  # (n_out, row_bytes) uint8, for block types
        self.values = values  # (n_out, n_in) float32 or uint16 bits, for float types

    @property
    def nbytes(self) -> int:
        return int((self.blocks if self.blocks is not None else self.values).nbytes)

    def __repr__(self) -> str:
        return f"PackedWeight({self.ggml_type.name}, n_out={self.n_out}, n_in={self.n_in})"


def pack_weight(raw: np.ndarray, ggml_type_: int | str | GGMLType, n_in: int) -> PackedWeight:
    """The packed form of one weight matrix.

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
        return PackedWeight(t, n_out, n_in, blocks=np.ascontiguousarray(raw))
    want = {GGMLType.F32: np.float32, GGMLType.F16: np.uint16, GGMLType.BF16: np.uint16}[t]
    if raw.dtype == np.uint8 and raw.shape[1] == n_bytes:
        raw = np.ascontiguousarray(raw).view(want)
    elif t == GGMLType.F16 and raw.dtype == np.float16:
        raw = raw.view(np.uint16)
    if raw.dtype != want or raw.shape[1] != n_in:
        raise ValueError(f"{t.name} weight must be (n_out, {n_in}) {np.dtype(want)}, got "
                         f"{raw.dtype} {raw.shape}")  # fmt: skip
    return PackedWeight(t, n_out, n_in, values=np.ascontiguousarray(raw))


def _round_to_half(x: np.ndarray, t: GGMLType) -> np.ndarray:
    """Activations rounded to the weight's half type, as ggml converts them for F16/BF16."""
    if t == GGMLType.F16:
        return x.astype(np.float16).astype(np.float32)
    bits = x.view(np.uint32)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) & np.uint32(0xFFFF0000)
    return np.where(np.isnan(x), x, rounded.view(np.float32))


def _check_matmul(w: PackedWeight, x: np.ndarray, out: np.ndarray) -> None:
    if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != w.n_in or not x.flags.c_contiguous:
        raise ValueError(
            f"X must be C-contiguous float32 (n_tok, {w.n_in}), got {x.dtype} {x.shape}"
        )
    if out.dtype != np.float32 or out.shape != (x.shape[0], w.n_out):
        raise ValueError(
            f"out must be float32 {(x.shape[0], w.n_out)}, got {out.dtype} {out.shape}"
        )


def matmul(w: PackedWeight, x: np.ndarray, out: np.ndarray) -> None:
    """out[t] = W @ x[t] for every token; x (n_tok, n_in) float32, out (n_tok, n_out) float32."""
    _check_matmul(w, x, out)
    t = w.ggml_type
    if t == GGMLType.F32:
        matmul_float_rows(w.values, x, out)
    elif t in FLOAT_TYPES:
        matmul_half_rows(t == GGMLType.BF16, w.values, _round_to_half(x, t), out)
    else:
        xq, xd, xs = quantize_activations(x, t in K_QUANTS)
        matmul_rows(int(t), w.blocks, xq, xd, xs, out)


def matvec(w: PackedWeight, x: np.ndarray, out: np.ndarray) -> None:
    """out = W @ x; x (n_in,) float32, out (n_out,) float32."""
    if x.ndim != 1 or out.ndim != 1:
        raise ValueError(f"matvec takes 1-D x and out, got {x.shape} and {out.shape}")
    matmul(w, x.reshape(1, -1), out.reshape(1, -1))


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
    if t == GGMLType.F32:
        out[:] = w.values[ids]
    elif t in FLOAT_TYPES:
        dequantize_rows_half(t == GGMLType.BF16, w.values, ids, out)
    else:
        dequantize_rows_blocks(int(t), w.blocks, ids, out)


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


assert TYPE_INFO[GGMLType.Q4_K].block_size == QK_K
