"""The fast quantizer against the numpy reference: identical bytes for every type it has."""

from __future__ import annotations

import numpy as np
import pytest

from llamba.formats import quants as ref
from llamba.kernels.quantize import QUANTIZE_TYPES, quantize


def awkward_rows(n_per_row: int) -> np.ndarray:
    """Rows of very different scales plus the edge cases of the scale searches."""
    rng = np.random.default_rng(n_per_row)
    x = rng.standard_normal((24, n_per_row)).astype(np.float32)
    x *= rng.uniform(1e-4, 20.0, (24, 1)).astype(np.float32)
    x[0] = 0.0  # all zero
    x[1] = 1.5  # constant
    x[2, : n_per_row // 2] = 0.0  # zero blocks next to others
    x[3] = x[3] ** 3  # heavy tails
    x[4, ::7] = 0.0
    x[5] = np.abs(x[5])  # one-signed rows: the min/max searches clamp
    x[6] = -np.abs(x[6])
    x[7, 3] = 1e4  # one outlier
    x[8] = np.float32(1e-20) * x[8]  # below the searches' epsilon
    return x


@pytest.mark.parametrize("qtype", QUANTIZE_TYPES, ids=lambda t: t.name)
def test_quantize_matches_reference(qtype):
    for n_per_row in (256, 768) if qtype.name.endswith("_K") else (64, 576):
        x = awkward_rows(n_per_row)
        np.testing.assert_array_equal(quantize(x, qtype), ref.quantize(x, qtype))


def test_quantize_errors():
    with pytest.raises(ValueError, match="no fast quantizer for IQ2_XXS"):
        quantize(np.zeros((1, 256), np.float32), "IQ2_XXS")
    with pytest.raises(ValueError, match="not whole Q4_K blocks"):
        quantize(np.zeros((1, 576), np.float32), "Q4_K")
    with pytest.raises(ValueError, match="2-D"):
        quantize(np.zeros(256, np.float32), "Q8_0")
