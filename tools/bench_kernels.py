"""`llamba bench kernels`: memory bandwidth, matvec / matmul speed per weight type, compile time.

Prints, in one run:
- DRAM read bandwidth with 1 and 2 threads (1 GiB read with vector loads);
- matvec GB/s of weight bytes per type on 4096x4096, 11008x4096 and the real models'
  shapes, with the fraction of the bandwidth (at the benchmark's thread count) measured
  between its runs: this host's bandwidth drifts by a third within minutes;
  each timing cycles through copies of the matrix (256 MiB in all), so the weights come
  from DRAM and not from the L3 cache, which holds a whole 11008x4096 Q4_0 matrix;
- matmul with 512 columns in GOP/s next to numpy float32 matmul on the dequantized matrix;
- the time to compile the whole kernel set (the linear kernels of every weight type and the
  float ops: `llamba warmup`) cold, and to load it from Numba's cache.
Weights are random bytes with sane scales: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from ..formats.ggml_types import TYPE_INFO, GGMLType
from ..kernels import linear
from ..kernels.cpu_features import available_isas, best_isa
from ..kernels.membench import BandwidthProbe, read_bandwidth
from ..kernels.quantize import quantize
from ..kernels.repack import LAYOUTS

# (n_out, n_in, what)
SHAPES = [
    (4096, 4096, "4096x4096"),
    (11008, 4096, "11008x4096"),
    (576, 576, "smollm2 attn q/o"),
    (1536, 576, "smollm2 ffn gate/up"),
    (576, 1536, "smollm2 ffn down"),
    (49152, 576, "smollm2 output"),
    (1024, 640, "gemma3 attn q"),
    (2048, 640, "gemma3 ffn gate/up"),
    (640, 2048, "gemma3 ffn down"),
    (262144, 640, "gemma3 output"),
]
ALL_TYPES = [t.name for t in linear.SUPPORTED_TYPES]


def random_weight(t: GGMLType, n_out: int, n_in: int, rng: np.random.Generator) -> np.ndarray:
    """(n_out, row_bytes) of random blocks whose fp16 scales are small normal numbers."""
    info = TYPE_INFO[t]
    if t == GGMLType.F32:
        return rng.standard_normal((n_out, n_in), np.float32)
    if t == GGMLType.F16:
        return rng.standard_normal((n_out, n_in), np.float32).astype(np.float16)
    if t == GGMLType.BF16:  # the top halves of float32 values
        return (rng.standard_normal((n_out, n_in), np.float32).view(np.uint32) >> 16).astype(
            np.uint16
        )
    raw = rng.integers(0, 256, (n_out, n_in // info.block_size * info.type_size), np.uint8)
    blocks = raw.reshape(n_out, -1, info.type_size)
    scale = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    for off in LAYOUTS[t].halves:
        blocks[:, :, off : off + 2] = scale
    return raw


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


COLD_BYTES = 256 << 20  # matvec cycles through copies this large: far more than any L3


def cold_copies(w: linear.PackedWeight, min_bytes: int = COLD_BYTES) -> list:
    """w and copies of it, together at least min_bytes: a matvec over each in turn reads its
    weights from DRAM, as a model's layers do, not from the cache the previous call filled."""
    copies = [w]
    while len(copies) * w.nbytes < min_bytes:
        c = linear.PackedWeight(w.ggml_type, w.n_out, w.n_in)
        for field in linear.PackedWeight.__slots__:
            v = getattr(w, field)
            setattr(c, field, v.copy() if isinstance(v, np.ndarray) else v)
        copies.append(c)
    return copies


def bench_matvec(types, shapes, repeats, rng, probe: BandwidthProbe | None = None):
    """Median matvec GB/s per type and shape. With a probe, a bandwidth read follows each
    timed run, and fraction_of_bandwidth is the median of the run-by-run fractions."""
    rows = []
    for name in types:
        t = GGMLType[name]
        for n_out, n_in, what in shapes:
            if n_in % TYPE_INFO[t].block_size:
                continue  # e.g. k-quants on 576-wide rows: no such tensor exists
            w = linear.pack_weight(random_weight(t, n_out, n_in, rng), t, n_in)
            x = rng.standard_normal(n_in, np.float32)
            out = np.empty(n_out, np.float32)
            copies = cold_copies(w)
            rates, bandwidths = [], []
            for i in range(repeats + 1):  # the first run compiles and warms up
                t0 = time.perf_counter()
                for c in copies:
                    linear.matvec(c, x, out)
                if i:
                    rates.append(w.nbytes * len(copies) / (time.perf_counter() - t0) / 1e9)
                    if probe is not None:
                        bandwidths.append(probe.measure())
            del copies
            row = {"type": name, "shape": what, "n_out": n_out, "n_in": n_in,
                   "bytes": w.nbytes, "gb_per_s": statistics.median(rates),
                   "runs_gb_per_s": rates}  # fmt: skip
            row["seconds"] = w.nbytes / row["gb_per_s"] / 1e9
            if probe is not None:
                row["bandwidth_gb_per_s"] = statistics.median(bandwidths)
                row["fraction_of_bandwidth"] = statistics.median(
                    r / b for r, b in zip(rates, bandwidths, strict=True)
                )
            rows.append(row)
            del w
    return rows


# numpy's BLAS threads spin for a while after each call (OpenBLAS: about 0.1 s), taking the
# cores from whatever runs next: a prompt matmul right after numpy's ran at half speed (Q2_K,
# 4096x4096 x 512, two threads: 1515 -> 732 GOP/s; 1419 after this pause), so each side's
# timing starts after it
SETTLE_S = 0.2


def bench_matmul(types, n_out, n_in, n_tok, repeats, rng):
    rows = []
    x = rng.standard_normal((n_tok, n_in), np.float32)
    ops = 2.0 * n_out * n_in * n_tok
    for name in types:
        t = GGMLType[name]
        w = linear.pack_weight(random_weight(t, n_out, n_in, rng), t, n_in)
        out = np.empty((n_tok, n_out), np.float32)
        time.sleep(SETTLE_S)
        sec = median_seconds(lambda w=w, out=out: linear.matmul(w, x, out), repeats)
        dense = linear.dequantize(w)  # (n_out, n_in) float32
        ref = np.empty((n_tok, n_out), np.float32)
        time.sleep(SETTLE_S)
        sec_np = median_seconds(lambda d=dense, r=ref: np.matmul(x, d.T, out=r), repeats)
        rows.append({"type": name, "gop_per_s": ops / sec / 1e9, "numpy_gop_per_s": ops / sec_np / 1e9,
                     "ratio": sec_np / sec})  # fmt: skip
    return rows


def bench_quantize(repeats: int, rng) -> dict:
    """Weights per second quantizing a 4096x4096 float32 matrix, and the projected time for
    1.1B weights as Q4_K_M (about 80 % Q4_K and 20 % Q6_K in a TinyLlama-shaped model)."""
    x = rng.standard_normal((4096, 4096), np.float32)
    rates = {}
    for name in ("Q4_K", "Q6_K", "Q5_0", "Q8_0"):
        sec = median_seconds(lambda n=name: quantize(x, n), repeats)
        rates[name] = x.size / sec
    projected = 1.1e9 * (0.8 / rates["Q4_K"] + 0.2 / rates["Q6_K"])
    return {"weights_per_s": rates, "projected_1_1b_q4_k_m_s": projected}


def compile_times(processes: int, loads: int = 3) -> dict:
    """Seconds to compile every kernel cold (fresh cache) and then to load it from the cache
    (median of `loads` runs), each in a new process (numbers include importing Numba and
    llamba; wall times also starting Python).

    The processes may write bytecode (.pyc) even where PYTHONDONTWRITEBYTECODE is set, as an
    installed package has it: else every load would also compile llamba's Python source."""
    code = (
        "import time; t = time.perf_counter()\n"
        "from llamba.kernels.warmup import warmup\n"
        f"warmup(processes={processes}); print(time.perf_counter() - t)\n"
    )
    result = {}
    with tempfile.TemporaryDirectory(prefix="llamba-numba-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for label, runs in (("cold", 1), ("cached", loads)):
            walls, in_process = [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                      text=True, check=True)  # fmt: skip
                walls.append(time.perf_counter() - t0)
                in_process.append(float(proc.stdout.split()[-1]))
            result[label] = {"wall_s": float(np.median(walls)),
                             "in_process_s": float(np.median(in_process))}  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="llamba bench kernels", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="kernel threads (default 2)")
    p.add_argument("--types", default=",".join(ALL_TYPES), help="comma-separated weight types")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per figure (median)")
    p.add_argument("--quick", action="store_true", help="only 4096x4096 and 11008x4096")
    p.add_argument("--no-matmul", action="store_true", help="skip the 512-column matmul")
    p.add_argument("--no-compile", action="store_true", help="skip the compile-time figures")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    types = [s.strip().upper() for s in args.types.split(",") if s.strip()]
    unknown = [t for t in types if t not in ALL_TYPES]
    if unknown:
        p.error(f"unknown types {', '.join(unknown)}; known: {', '.join(ALL_TYPES)}")
    rng = np.random.default_rng(0)
    report: dict = {"isa": best_isa(), "available_isas": list(available_isas())}

    bw = {n: read_bandwidth(threads=n) for n in (1, 2)}
    report["dram_read_gb_per_s"] = bw
    linear.set_num_threads(args.threads)
    report["threads"] = linear.get_num_threads()
    shapes = SHAPES[:2] if args.quick else SHAPES
    probe = BandwidthProbe(COLD_BYTES, report["threads"])
    report["matvec"] = bench_matvec(types, shapes, args.repeats, rng, probe)
    del probe
    if not args.no_matmul:
        report["matmul_512"] = bench_matmul(types, 4096, 4096, 512, max(3, args.repeats // 2), rng)
    report["quantize"] = bench_quantize(max(1, args.repeats // 3), rng)
    if not args.no_compile:
        report["compile"] = compile_times(processes=max(1, args.threads))

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"instruction set {report['isa']} (available: {', '.join(report['available_isas'])}), "
          f"{report['threads']} threads")  # fmt: skip
    print(f"DRAM read bandwidth: {bw[1]:.1f} GB/s (1 thread), {bw[2]:.1f} GB/s (2 threads)")
    print(f"\nmatvec, GB/s of weight bytes (median of {args.repeats}); BW: the read bandwidth "
          f"measured after each run, and 'of BW' the median of the run-by-run fractions")  # fmt: skip
    print(f"{'type':<6} {'shape':<20} {'n_out x n_in':>14} {'MB':>8} {'GB/s':>7} {'BW':>6} "
          f"{'of BW':>6}")  # fmt: skip
    for r in report["matvec"]:
        dims = f"{r['n_out']}x{r['n_in']}"
        print(f"{r['type']:<6} {r['shape']:<20} {dims:>14} {r['bytes'] / 1e6:>8.1f} "
              f"{r['gb_per_s']:>7.1f} {r['bandwidth_gb_per_s']:>6.1f} "
              f"{r['fraction_of_bandwidth']:>6.0%}")  # fmt: skip
    if "matmul_512" in report:
        print("\nmatmul 4096x4096 by 512 columns, GOP/s (numpy: float32 on the dequantized matrix)")
        print(f"{'type':<6} {'llamba':>8} {'numpy':>8} {'ratio':>6}")
        for r in report["matmul_512"]:
            print(f"{r['type']:<6} {r['gop_per_s']:>8.1f} {r['numpy_gop_per_s']:>8.1f} "
                  f"{r['ratio']:>6.2f}")  # fmt: skip
    q = report["quantize"]
    rates = ", ".join(f"{k} {v / 1e6:.0f}" for k, v in q["weights_per_s"].items())
    print(f"\nquantize (M weights/s): {rates}; 1.1B weights to Q4_K_M in about "
          f"{q['projected_1_1b_q4_k_m_s']:.0f} s")  # fmt: skip
    if "compile" in report:
        c = report["compile"]
        print(f"\ncompile the whole kernel set (every weight type, the float ops): cold "
              f"{c['cold']['in_process_s']:.1f} s "
              f"({c['cold']['wall_s']:.1f} s with interpreter start), from cache "
              f"{c['cached']['in_process_s']:.2f} s ({c['cached']['wall_s']:.2f} s; median of 3)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
