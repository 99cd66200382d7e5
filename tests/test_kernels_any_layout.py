"""any_layout: one compile of a kernel serves contiguous arrays, column views and read-only
arrays alike, with the results of the same kernel compiled for each."""

import numpy as np
import pytest
from numba import njit

from llamba.kernels.any_layout import any_layout


def scaled_row_sums(a, scale, out):
    for i in range(a.shape[0]):
        s = np.float32(0)
        for j in range(a.shape[1]):
            s += a[i, j]
        out[i] = s * scale


def test_one_compile_for_every_layout():
    kernel = any_layout("out")(njit(scaled_row_sums))
    rng = np.random.default_rng(0)
    packed = rng.standard_normal((5, 12)).astype(np.float32)
    whole = packed[:, 4:].copy()
    read_only = whole.copy()
    read_only.flags.writeable = False
    out_packed = np.zeros((2, 5), np.float32)
    for a, out in ((whole, np.zeros(5, np.float32)), (packed[:, 4:], np.zeros(5, np.float32)),
                   (read_only, out_packed[1]), (packed[:, ::3], np.zeros(5, np.float32))):  # fmt: skip
        kernel(a, np.float32(0.5), out)
        expected = np.zeros(5, np.float32)
        scaled_row_sums(a, np.float32(0.5), expected)  # the same float order in Python
        np.testing.assert_array_equal(out, expected)
    assert len(kernel._dispatcher.signatures) == 1


def test_written_names_must_be_parameters():
    with pytest.raises(ValueError, match="missing"):
        any_layout("missing")(njit(scaled_row_sums))
