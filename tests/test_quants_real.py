"""The reference quantization on the real models' tensors, against gguf-py.

Every tensor of both models is dequantized (a sample of rows of the big ones) and compared bit
for bit with gguf.quants.dequantize; dequantized real weights are requantized to the legacy
types and BF16 and compared with gguf.quants.quantize.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from llamba.formats import GGMLType
from llamba.formats.gguf_reader import GGUFFile
from llamba.formats.quants import dequantize, quantize

GQ = gguf.GGMLQuantizationType
ROWS_PER_TENSOR = 16
GGUF_QUANT_TYPES = [GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0]
GGUF_QUANT_TYPES.append(GGMLType.BF16)


def sample_rows(rows: np.ndarray) -> np.ndarray:
    """Up to ROWS_PER_TENSOR rows spread over the tensor, first and last included."""
    pick = np.unique(np.linspace(0, rows.shape[0] - 1, ROWS_PER_TENSOR).astype(int))
    return np.ascontiguousarray(rows[pick])


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.slow
def test_dequantize_every_tensor_matches_gguf(real_model_path):
    seen = set()
    with GGUFFile(real_model_path) as f:
        for name, info in f.tensors.items():
            rows = sample_rows(f.tensor_bytes(name))  # (n, row_bytes) uint8
            ours = dequantize(rows, info.type, (rows.shape[0], info.shape[0]))
            theirs = gguf.quants.dequantize(rows, GQ(int(info.type)))
            assert bits_equal(ours, theirs), name
            seen.add(info.type)
    # what the two files hold: SmolLM2 Q4_1 + Q8_0, Gemma Q5_0 + Q8_0 + Q4_K + Q6_K; F32 norms
    assert GGMLType.F32 in seen and GGMLType.Q8_0 in seen and len(seen) >= 3


@pytest.mark.slow
def test_quantize_real_weights_matches_gguf(real_model_path):
    with GGUFFile(real_model_path) as f:
        names = [n for n, i in f.tensors.items() if len(i.shape) == 2][::4]
        for name in names:
            info = f.tensors[name]
            x = dequantize(sample_rows(f.tensor_bytes(name)), info.type).reshape(-1, info.shape[0])
            for qtype in GGUF_QUANT_TYPES:
                theirs = gguf.quants.quantize(x, GQ(int(qtype))).view(np.uint8)
                assert bits_equal(quantize(x, qtype), theirs), (name, qtype.name)
