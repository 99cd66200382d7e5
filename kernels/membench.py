"""Memory read bandwidth, measured the way the matrix kernels read weights (vector loads)."""

from __future__ import annotations

import time

import numba
import numpy as np
from numba import njit, prange

from .cpu_features import isa_token
from .simd import lanes, load_i32, store_f32, to_f32, zeros_i32


@njit(cache=True, parallel=True)
def read_words(isa, words, n_chunks, out):
    """Sums words (int32, flat) in n_chunks parallel chunks with vector loads; out (16 * n_chunks,)."""
    n = lanes(isa)
    per = words.size // n_chunks // (4 * n) * (4 * n)
    for c in prange(n_chunks):
        a0, a1, a2, a3 = zeros_i32(isa), zeros_i32(isa), zeros_i32(isa), zeros_i32(isa)
        i = c * per
        end = i + per
        while i < end:  # four independent sums keep several loads in flight
            a0 = a0 + load_i32(isa, words, i)
            a1 = a1 + load_i32(isa, words, i + n)
            a2 = a2 + load_i32(isa, words, i + 2 * n)
            a3 = a3 + load_i32(isa, words, i + 3 * n)
            i += 4 * n
        store_f32(out, c * 16, to_f32((a0 + a1) + (a2 + a3)))


class BandwidthProbe:
    """One timed read of an n_bytes array with `threads` threads per measure(): a benchmark
    interleaves it with the runs it reports, so that a fraction of the bandwidth compares
    figures taken moments apart on a host whose bandwidth drifts."""

    def __init__(self, n_bytes: int = 1 << 30, threads: int = 1):
        self.words = np.ones(n_bytes // 4, np.int32)
        self.out = np.empty(16 * 64, np.float32)
        self.threads = threads
        self.isa = isa_token()
        self.measure()  # compiles, and faults the pages in

    def measure(self) -> float:
        """GB/s of one read of the array."""
        previous = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        try:
            t0 = time.perf_counter()
            read_words(self.isa, self.words, 64, self.out)
            seconds = time.perf_counter() - t0
        finally:
            numba.set_num_threads(previous)
        return self.words.nbytes / seconds / 1e9


def read_bandwidth(n_bytes: int = 1 << 30, threads: int = 1, repeats: int = 5) -> float:
    """Best read bandwidth in GB/s over `repeats` passes of an n_bytes array."""
    probe = BandwidthProbe(n_bytes, threads)
    return max(probe.measure() for _ in range(repeats))
