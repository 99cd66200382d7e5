"""Compile (or load from the cache) every linear kernel ahead of first use."""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..formats.ggml_types import TYPE_INFO, GGMLType
from . import linear
from .cache_locator import warm_stamp
from .cpu_features import best_isa
from .tile_dots import TILED_FROM, TILED_ORDER

# rough relative cold compile time per type (seconds in one process at 003ed3e; only the
# order matters): k-quants compile three shapes each, the float types one kernel
COMPILE_COST = {GGMLType.Q2_K: 8, GGMLType.Q3_K: 8, GGMLType.Q4_K: 7, GGMLType.Q5_K: 7,
                GGMLType.Q6_K: 6, GGMLType.Q4_0: 6, GGMLType.Q5_0: 6, GGMLType.F16: 3,
                GGMLType.Q4_1: 3, GGMLType.Q5_1: 3, GGMLType.Q8_0: 3}  # fmt: skip


def warm_type(t: GGMLType, isas: list[str]) -> None:
    """matvec, matmul and get_rows once on a one-tile matrix of type t."""
    info = TYPE_INFO[t]
    n_in = max(256, info.block_size)
    n_out = 16  # one tile (rows past the tiles compile their own kernel on first use)
    raw = np.zeros((n_out, n_in // info.block_size * info.type_size), np.uint8)
    raw.flags.writeable = False  # as the read-only file mappings models are packed from
    w = linear.pack_weight(raw, t, n_in)
    # the one-token and the many-token kernels (and the batch order llama.cpp's tiled kernel
    # sums from TILED_FROM tokens, where a type has one)
    counts = (1, linear.BATCH_FROM) + ((TILED_FROM,) if t in TILED_ORDER else ())
    for n_tok in counts:
        x = np.zeros((n_tok, n_in), np.float32)
        out = np.empty((n_tok, n_out), np.float32)
        for isa in isas:
            linear.matmul(w, x, out, isa=isa)
    linear.get_rows(w, np.array([0, 15]), np.empty((2, n_in), np.float32))


def _warm_types(types: list[int], isas: list[str]) -> float:
    t0 = time.perf_counter()
    for t in types:
        warm_type(GGMLType(t), isas)
    return time.perf_counter() - t0


def warmup(
    types: list[GGMLType] | None = None, isas: list[str] | None = None, processes: int = 1
) -> float:
    """Compile every kernel of the given types (default: all) and paths (default: this CPU's
    best) into Numba's cache; returns the seconds taken.

    Compiling takes seconds per type; with processes > 1 the types are shared among that
    many worker processes, then this process loads the results (and compiles whatever a
    worker's cache write lost to a concurrent one).
    """
    t0 = time.perf_counter()
    types = list(linear.SUPPORTED_TYPES) if types is None else [GGMLType(t) for t in types]
    isas = [best_isa()] if isas is None else list(isas)
    # once compiled, loading from the cache takes well under a second: worker processes
    # (each starting Python and Numba) would only add to it
    stamp = warm_stamp(repr((sorted(int(t) for t in types), sorted(isas))))
    if processes > 1 and len(types) > 1 and not (stamp and stamp.exists()):
        # one type per task, the slowest to compile first: a worker that is done takes the
        # next, so the processes finish together (fixed shares left one idle for seconds)
        order = sorted(types, key=lambda t: -COMPILE_COST.get(t, 1))
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            list(pool.map(_warm_types, [[int(t)] for t in order], [isas] * len(order)))
    _warm_types([int(t) for t in types], isas)
    if stamp:
        with contextlib.suppress(OSError):
            stamp.touch()
    return time.perf_counter() - t0
