"""Unquantized float types: F32, F16, BF16 (one element per "block")."""

from __future__ import annotations

import numpy as np

from ..ggml_types import GGMLType
from .base import F32, QuantType, fp16_bits


class F32Type(QuantType, qtype=GGMLType.F32):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(blocks).view("<f4").astype(F32)

    @classmethod
    def quantize_blocks(cls, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype="<f4").view(np.uint8)


class F16Type(QuantType, qtype=GGMLType.F16):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(blocks).view("<f2").astype(F32)

    @classmethod
    def quantize_blocks(cls, x: np.ndarray) -> np.ndarray:
        return fp16_bits(x).astype("<u2").view(np.uint8)


class BF16Type(QuantType, qtype=GGMLType.BF16):
    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        bits = np.ascontiguousarray(blocks).view("<u2").astype(np.uint32) << 16
        return bits.view(F32)

    @classmethod
    def quantize_blocks(cls, x: np.ndarray) -> np.ndarray:
        # ggml_compute_fp32_to_bf16: NaN keeps its top bits and is forced quiet; everything
        # else rounds to nearest even on the 16 dropped bits (inf stays inf, overflow -> inf).
        u = np.ascontiguousarray(x, dtype=F32).view(np.uint32)
        is_nan = (u & 0x7FFFFFFF) > 0x7F800000
        rounded = (u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16
        bits = np.where(is_nan, (u >> 16) | 64, rounded).astype("<u2")
        return bits.view(np.uint8)
