"""Reference (de)quantization of GGML types in numpy: the ground truth for every kernel.

    dequantize(data, qtype, shape=None) -> float32 array
    quantize(x, qtype) -> uint8 array of shape x.shape[:-1] + (row_bytes,)

Both follow ggml bit for bit: quantize_row_*_ref in ggml-quants.c (for k-quants the path
without an importance matrix, which is what llama.cpp's quantize runs when given no imatrix)
and dequantize_row_*. ggml works in float32, one rounding per operation in source order, and
so do we; a C compiler that fuses a * b + c into one FMA rounds rare ties differently (gguf-py's
note on Q4_0/Q5_0); llama-cpp-python's x86-64 build of ggml-base does not fuse, gguf-py's numpy
code cannot, and both agree with these references byte for byte.
"""

from __future__ import annotations

import numpy as np

from ..ggml_types import GGMLType, ggml_type
from . import floats, kquants_minmax, kquants_sym, legacy  # noqa: F401  (register the types)
from .base import REGISTRY, QuantType

QUANT_TYPES: tuple[GGMLType, ...] = tuple(sorted(REGISTRY))

# weights handled per numpy pass: bounds the scratch memory of the k-quant searches
_WEIGHTS_PER_PASS = 1 << 20


def quant_type(qtype: int | str | GGMLType) -> type[QuantType]:
    """The reference class of a type; ValueError naming the supported ones if there is none."""
    t = ggml_type(qtype)
    cls = REGISTRY.get(t)
    if cls is None:
        supported = ", ".join(s.name for s in QUANT_TYPES)
        raise ValueError(f"no reference quantization for {t.name}; supported: {supported}")
    return cls


def dequantize(
    data, qtype: int | str | GGMLType, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """Whole blocks of `qtype` (bytes, or a uint8 array of any shape) -> float32 weights.

    The result is flat, or has `shape` (numpy order) if given.
    """
    cls = quant_type(qtype)
    raw = (
        np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    )
    raw = np.asarray(raw)
    if raw.dtype != np.uint8:
        raise ValueError(f"quantized data must be bytes or uint8, got {raw.dtype}")
    raw = raw.reshape(-1)
    if raw.size % cls.type_size:
        raise ValueError(
            f"{raw.size} bytes is not a whole number of {cls.qtype.name} blocks of {cls.type_size}"
        )
    n_elements = raw.size // cls.type_size * cls.block_size
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape) or int(np.prod(shape, dtype=np.int64)) != n_elements:
            raise ValueError(f"shape {shape} does not hold {n_elements} {cls.qtype.name} weights")
    blocks = raw.reshape(-1, cls.type_size)
    out = np.empty((blocks.shape[0], cls.block_size), np.float32)
    _in_passes(cls.dequantize_blocks, blocks, out, cls.block_size)
    return out.reshape(shape if shape is not None else (n_elements,))


def quantize(x, qtype: int | str | GGMLType) -> np.ndarray:
    """float weights (last axis a multiple of the block size) -> uint8 blocks of `qtype`,
    shape x.shape[:-1] + (row_bytes,). Non-float32 input is first converted to float32."""
    cls = quant_type(qtype)
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("cannot quantize a scalar: need at least one axis")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"cannot quantize {x.dtype} data")
    x = x.astype(np.float32, copy=False)
    row = x.shape[-1]
    if row % cls.block_size:
        raise ValueError(
            f"row of {row} is not a multiple of {cls.qtype.name}'s block of {cls.block_size}"
        )
    if cls.block_size > 1 and not np.isfinite(x).all():
        raise ValueError(f"cannot quantize non-finite values (inf/NaN) to {cls.qtype.name}")
    blocks = np.ascontiguousarray(x).reshape(-1, cls.block_size)
    out = np.empty((blocks.shape[0], cls.type_size), np.uint8)
    _in_passes(cls.quantize_blocks, blocks, out, cls.block_size)
    return out.reshape(x.shape[:-1] + (row // cls.block_size * cls.type_size,))


def _in_passes(block_fn, blocks: np.ndarray, out: np.ndarray, block_size: int) -> None:
    """out[i] = block_fn(blocks)[i], a bounded number of weights at a time. Float overflow and
    0/0 inside are ggml's own arithmetic on extreme inputs (C does them silently), not errors."""
    step = max(1, _WEIGHTS_PER_PASS // block_size)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        for start in range(0, blocks.shape[0], step):
            out[start : start + step] = block_fn(blocks[start : start + step])


__all__ = ["QUANT_TYPES", "REGISTRY", "QuantType", "dequantize", "quant_type", "quantize"]
