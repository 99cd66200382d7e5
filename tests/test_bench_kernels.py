"""The kernel benchmark measures what it says: weights streamed from DRAM, not from cache."""

import numpy as np

from llamba.kernels import linear
from llamba.tools.bench_kernels import cold_copies, random_weight


def test_cold_copies_are_separate_arrays_of_the_same_matrix():
    rng = np.random.default_rng(0)
    w = linear.pack_weight(random_weight(linear.GGMLType.Q4_K, 40, 256, rng), "Q4_K", 256)
    copies = cold_copies(w, min_bytes=5 * w.nbytes)
    assert len(copies) == 5 and copies[0] is w
    x = rng.standard_normal(256, np.float32)
    want = np.empty(40, np.float32)
    linear.matvec(w, x, want)
    for c in copies[1:]:
        assert not np.shares_memory(c.quants, w.quants)
        assert not np.shares_memory(c.tail, w.tail)
        got = np.empty(40, np.float32)
        linear.matvec(c, x, got)
        np.testing.assert_array_equal(got, want)
