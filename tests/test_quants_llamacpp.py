"""The reference quantization against llama.cpp itself (llama-cpp-python's build).

Two oracles from the same build:
- ggml's own functions in the libggml-base that llama-cpp-python ships, called through ctypes:
  ggml_quantize_chunk (with no importance matrix it runs quantize_row_*_ref for every type we
  have, k-quants included: quantize_qX_K falls back to quantize_row_qX_K_ref when
  quant_weights is NULL), quantize_row_q8_1_ref / quantize_row_q8_K_ref (activation types, not
  in ggml_quantize_chunk), dequantize_row_*, and the fp16 / bf16 row conversions.
- llama_model_quantize on both real models with allow_requantize: llama.cpp dequantizes each
  source tensor to float32 (dequantize_row_* again) and quantizes it with ggml_quantize_chunk;
  we do the same with our reference and compare every tensor it quantized.

The bytes must be identical. ggml computes in float32 in source order; that is reproducible
as long as the compiler does not fuse a * b + c into one FMA, which llama-cpp-python's build
of ggml-base does not do on x86-64 (ggml-base gets no -march flags). A build that does fuse
(aarch64 gcc, or ggml-base built with -march=native) rounds rare ties differently; the probe
`ggml_fuses_multiply_add` detects that from ggml's own codes, and then the test accepts, per
tensor, an RMSE no more than 0.5 % above llama.cpp's instead of identical bytes.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from functools import cache
from pathlib import Path

import llama_cpp
import numpy as np
import pytest
from test_quants_reference import (
    bits_equal,
    fma_sensitive_blocks,
    random_blocks,
    special_rows,
    weight1_codes,
)

from llamba.formats import TYPE_INFO, GGMLType
from llamba.formats.gguf_reader import GGUFFile
from llamba.formats.quants import QUANT_TYPES, dequantize, quantize

T = GGMLType
C_FLOAT_P = ctypes.POINTER(ctypes.c_float)
ROW_FNS = {T.Q8_1: "quantize_row_q8_1_ref", T.Q8_K: "quantize_row_q8_K_ref"}


@cache
def libggml_base() -> ctypes.CDLL:
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    path = min(lib_dir.glob("*ggml-base*"), key=lambda p: len(p.name))  # libggml-base.so
    lib = ctypes.CDLL(str(path))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = (
        ctypes.c_int, C_FLOAT_P, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
        ctypes.c_int64, C_FLOAT_P,
    )  # fmt: skip
    for name in ROW_FNS.values():
        getattr(lib, name).argtypes = (C_FLOAT_P, ctypes.c_void_p, ctypes.c_int64)
    lib.ggml_blck_size.restype = ctypes.c_int64
    lib.ggml_type_size.restype = ctypes.c_size_t
    lib.ggml_blck_size.argtypes = lib.ggml_type_size.argtypes = (ctypes.c_int,)
    return lib


def ggml_quantize(x: np.ndarray, qtype: GGMLType) -> np.ndarray:
    """ggml's quantization of rows x (n, k) float32 -> (n, row_bytes) uint8."""
    lib = libggml_base()
    x = np.ascontiguousarray(x, np.float32)
    info = TYPE_INFO[qtype]
    out = np.zeros((x.shape[0], x.shape[1] // info.block_size * info.type_size), np.uint8)
    if qtype in ROW_FNS:
        getattr(lib, ROW_FNS[qtype])(x.ctypes.data_as(C_FLOAT_P), out.ctypes.data, x.size)
    else:
        n = lib.ggml_quantize_chunk(
            int(qtype),
            x.ctypes.data_as(C_FLOAT_P),
            out.ctypes.data,
            0,
            x.shape[0],
            x.shape[1],
            None,
        )
        assert n == out.size
    return out


def ggml_dequantize(blocks: np.ndarray, qtype: GGMLType) -> np.ndarray:
    """ggml's dequantization (dequantize_row_*, fp16/bf16 row conversion) -> flat float32."""
    lib = libggml_base()
    blocks = np.ascontiguousarray(blocks, np.uint8).reshape(-1)
    info = TYPE_INFO[qtype]
    n = blocks.size // info.type_size * info.block_size
    out = np.zeros(n, np.float32)
    name = {T.F16: "ggml_fp16_to_fp32_row", T.BF16: "ggml_bf16_to_fp32_row"}.get(qtype)
    name = name or "dequantize_row_" + qtype.name.lower().replace("_k", "_K")
    fn = getattr(lib, name)
    fn.argtypes = (ctypes.c_void_p, C_FLOAT_P, ctypes.c_int64)
    fn(blocks.ctypes.data, out.ctypes.data_as(C_FLOAT_P), n)
    return out


@cache
def ggml_fuses_multiply_add() -> bool:
    """Does this ggml build round `x * id + 8.5f` as one fused operation? Read from the codes
    ggml itself writes for blocks where fused and unfused rounding differ."""
    blocks, unfused, fused = fma_sensitive_blocks(T.Q4_0, np.random.default_rng(7))
    codes = weight1_codes(ggml_quantize(blocks, T.Q4_0), T.Q4_0)
    assert np.array_equal(codes, unfused) or np.array_equal(codes, fused)
    return np.array_equal(codes, fused)


def rmse(q: np.ndarray, qtype: GGMLType, x: np.ndarray) -> float:
    return float(np.sqrt(np.mean((dequantize(q, qtype, x.shape) - x).astype(np.float64) ** 2)))


def assert_same_as_llamacpp(ours: np.ndarray, theirs: np.ndarray, qtype: GGMLType, x, what: str):
    if bits_equal(ours, theirs):
        return
    per_block = TYPE_INFO[qtype].type_size
    n_bad = int(np.any(ours.reshape(-1, per_block) != theirs.reshape(-1, per_block), axis=1).sum())
    assert ggml_fuses_multiply_add(), f"{what}: {n_bad} {qtype.name} blocks differ from ggml"
    # FMA-contracted ggml rounds some ties differently: no worse than llama.cpp by 0.5 %
    assert rmse(ours, qtype, x) <= 1.005 * rmse(theirs, qtype, x), what


# ---------------------------------------------------------------- ggml's functions


@pytest.mark.slow
def test_type_table_matches_ggml():
    lib = libggml_base()
    for t in QUANT_TYPES:
        assert (lib.ggml_blck_size(int(t)), lib.ggml_type_size(int(t))) == (
            TYPE_INFO[t].block_size,
            TYPE_INFO[t].type_size,
        ), t.name


@pytest.mark.slow
@pytest.mark.parametrize("qtype", [t for t in QUANT_TYPES if t != T.F32], ids=lambda t: t.name)
def test_quantize_matches_ggml(qtype):
    rng = np.random.default_rng(int(qtype))
    parts = [special_rows(1024, rng), rng.standard_normal((48, 1024))]
    for fma_type in (T.Q4_0, T.Q5_0):  # FMA-sensitive blocks, 32 to a row
        b = fma_sensitive_blocks(fma_type, rng)[0]
        parts.append(b[: len(b) // 32 * 32].reshape(-1, 1024))
    if qtype in (T.F16, T.BF16):  # the float types also take inf, nan, overflow, subnormals
        parts.append(
            rng.choice([np.inf, -np.inf, np.nan, 7e4, -3.4028235e38, 1e-41, 65519.0], (2, 1024))
        )
    x = np.concatenate(parts).astype(np.float32)
    assert_same_as_llamacpp(quantize(x, qtype), ggml_quantize(x, qtype), qtype, x, "random rows")


@pytest.mark.slow
@pytest.mark.parametrize(
    "qtype", [t for t in QUANT_TYPES if t not in (T.F32, T.Q8_1)], ids=lambda t: t.name
)
def test_dequantize_random_valid_blocks_matches_ggml(qtype):
    """Every type ggml converts to float32 (F32 is a copy; there is no dequantize_row_q8_1)."""
    blocks = random_blocks(
        qtype, 4096 if TYPE_INFO[qtype].block_size == 1 else 512, np.random.default_rng(9)
    )
    assert bits_equal(dequantize(blocks, qtype), ggml_dequantize(blocks, qtype))


# ---------------------------------------------------------------- llama_model_quantize

# Presets and the k-quant each stores. `pure` makes every quantizable tensor that type (else
# Q4_K_M mixes in Q6_K by layer), so each preset covers its own k-quant on both models; rows
# that are not a multiple of 256 (width 576 / 640) fall back to Q4_0, Q5_0, Q5_1 or Q8_0, which
# are compared too. Only ffn_down (1536 / 2048 wide) and Gemma's attn_output (1024) are k-quants.
PRESETS = {
    "Q2_K": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K, T.Q2_K),
    "Q3_K_M": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_M, T.Q3_K),
    "Q4_K_M": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, T.Q4_K),
    "Q5_K_M": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M, T.Q5_K),
    "Q6_K": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K, T.Q6_K),
}
KEEP_LAYERS = 1  # prune the rest: the comparison is per tensor, one layer is plenty


def llama_quantize(src: Path, dst: Path, ftype: int) -> None:
    with GGUFFile(src) as f:
        n_layer = 1 + max(int(n.split(".")[1]) for n in f.tensors if n.startswith("blk."))
        embd_type = f.tensors["token_embd.weight"].type
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = 2
    params.ftype = ftype
    params.allow_requantize = True
    params.pure = True
    params.token_embedding_type = int(embd_type)  # keep it: a copy, not a 30M-weight requant
    prune = (ctypes.c_int32 * (n_layer - KEEP_LAYERS + 1))(*range(KEEP_LAYERS, n_layer), -1)
    params.prune_layers = ctypes.cast(prune, ctypes.POINTER(ctypes.c_int32))
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_llama_model_quantize_matches_reference(real_model_path, preset, tmp_path):
    ftype, ktype = PRESETS[preset]
    out = tmp_path / f"{preset}.gguf"
    llama_quantize(Path(real_model_path), out, ftype)
    compared = Counter()
    with GGUFFile(real_model_path) as src, GGUFFile(out) as dst:
        assert len(dst.tensors) < len(src.tensors)  # the pruning took
        for name, info in dst.tensors.items():
            source = src.tensors[name]
            if info.type == source.type or len(info.shape) < 2:
                continue  # copied as is, not quantized by llama.cpp
            assert info.type in QUANT_TYPES, f"{name}: llama.cpp chose {info.type.name}"
            x = dequantize(src.tensor_bytes(name), source.type).reshape(-1, info.shape[0])
            theirs = dst.tensor_bytes(name)
            ours = quantize(x, info.type)
            assert_same_as_llamacpp(ours, theirs, info.type, x, f"{preset} {name}")
            compared[info.type] += 1
    assert compared[ktype] >= KEEP_LAYERS, compared  # at least every layer's ffn_down
