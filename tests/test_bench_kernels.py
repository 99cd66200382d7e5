"""The kernel benchmark measures what it says: weights streamed from DRAM, not from cache."""

import numpy as np
import pytest

from llamba.kernels import linear
from llamba.tools.bench_kernels import bench_matvec, cold_copies, random_weight


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


class ScriptedProbe:
    """Bandwidth readings that drift, as this host's do."""

    def __init__(self, readings):
        self.readings = list(readings)

    def measure(self):
        return self.readings.pop(0)


def test_matvec_fraction_is_taken_against_the_bandwidth_read_after_each_run():
    rng = np.random.default_rng(1)
    probe = ScriptedProbe([10.0, 20.0, 40.0])
    (row,) = bench_matvec(["Q8_0"], [(32, 256, "small")], 3, rng, probe)
    assert not probe.readings  # one reading after each timed run
    runs = row["runs_gb_per_s"]
    assert len(runs) == 3 and row["gb_per_s"] == np.median(runs)
    assert row["bandwidth_gb_per_s"] == 20.0
    # the median of the run-by-run fractions, not the median rate over the median reading
    assert row["fraction_of_bandwidth"] == np.median(np.array(runs) / [10.0, 20.0, 40.0])
    assert row["seconds"] * row["gb_per_s"] * 1e9 == pytest.approx(row["bytes"])


def test_bandwidth_probe_reads_its_whole_array():
    from llamba.kernels.membench import BandwidthProbe

    probe = BandwidthProbe(n_bytes=1 << 24, threads=1)
    assert probe.measure() > 0.5  # GB/s: any machine that runs the tests
    assert probe.out.sum() == probe.words.size  # every word (all ones) was summed
