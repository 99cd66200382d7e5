"""Compile (or load from the cache) every kernel ahead of first use: the linear kernels of
each weight type, and the float ops."""

from __future__ import annotations

import contextlib
import time

import numpy as np

from ..formats.ggml_types import TYPE_INFO, GGMLType
from . import linear
from .cache_locator import warm_stamp
from .cpu_features import best_isa
from .gc_pause import gc_paused
from .tile_dots import TILED_FROM, TILED_ORDER
from .warmup_ops import FLOAT_OP_GROUPS

# cold compile seconds per type, each alone in a fresh cache (ctime-style, at 3fa7f37;
# only the order matters): k-quants compile three shapes each, the float types one kernel
COMPILE_COST = {GGMLType.Q3_K: 11.5, GGMLType.Q6_K: 11.1, GGMLType.Q5_K: 10.9,
                GGMLType.Q2_K: 10.6, GGMLType.Q4_0: 10.0, GGMLType.Q4_K: 9.8,
                GGMLType.Q5_0: 5.9, GGMLType.Q4_1: 5.9, GGMLType.Q5_1: 5.9, GGMLType.Q8_0: 5.7,
                GGMLType.F16: 1.2, GGMLType.BF16: 1.2, GGMLType.F32: 1.0}  # fmt: skip


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


def _compile_order(types: list[GGMLType], float_ops: bool) -> list[str]:
    """Worker tasks (type names, float op groups), in the order the workers take them.

    Every block type compiles kernels the others share (tiling, row lookups, its family's
    activation quantizer), which the first type to compile pays for. So the costliest type
    goes first and the float op groups, which share nothing with it, next: a second worker
    spends the first one's time on them and then finds the shared kernels in the cache.
    The other types follow, the slowest first, so that the processes finish together."""
    by_cost = [t.name for t in sorted(types, key=lambda t: -COMPILE_COST.get(t, 1))]
    ops = list(FLOAT_OP_GROUPS) if float_ops else []
    return by_cost[:1] + ops + by_cost[1:]


def _warm_tasks(tasks: list[str], isas: list[str]) -> float:
    t0 = time.perf_counter()
    for task in tasks:
        if task in FLOAT_OP_GROUPS:
            FLOAT_OP_GROUPS[task]()
        else:
            warm_type(GGMLType[task], isas)
    return time.perf_counter() - t0


def warmup_stamp(types: list[GGMLType], isas: list[str], float_ops: bool):
    """The file that marks this set of kernels as compiled into the cache (None if no cache
    directory can be written)."""
    key = repr((sorted(int(t) for t in types), sorted(isas)))
    return warm_stamp(key + (" float-ops" if float_ops else ""))


def is_warmed(types: list[GGMLType], isas: list[str] | None = None, float_ops: bool = True):
    """Whether warmup has compiled these kernels into the cache already."""
    stamp = warmup_stamp(types, [best_isa()] if isas is None else list(isas), float_ops)
    return bool(stamp and stamp.exists())


def warmup(
    types: list[GGMLType] | None = None,
    isas: list[str] | None = None,
    processes: int = 1,
    float_ops: bool = True,
) -> float:
    """Compile every kernel of the given types (default: all), paths (default: this CPU's
    best) and, with float_ops, the float ops into Numba's cache; returns the seconds taken.

    Compiling takes seconds per type; with processes > 1 the work is shared among that
    many worker processes, then this process loads the results (and compiles whatever a
    worker's cache write lost to a concurrent one).
    """
    t0 = time.perf_counter()
    types = list(linear.SUPPORTED_TYPES) if types is None else [GGMLType(t) for t in types]
    isas = [best_isa()] if isas is None else list(isas)
    tasks = _compile_order(types, float_ops)
    # once compiled, loading from the cache takes well under a second: worker processes
    # (each starting Python and Numba) would only add to it
    stamp = warmup_stamp(types, isas, float_ops)
    warmed = bool(stamp and stamp.exists())  # all in the cache: loads only
    if processes > 1 and len(tasks) > 1 and not warmed:
        # one task per type or op group: a worker that is done takes the next, so the
        # processes finish together (fixed shares left one idle for seconds)
        # imported here: a warmed cache never starts workers, and these imports alone
        # would add a tenth of loading everything from the cache
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            list(pool.map(_warm_tasks, [[task] for task in tasks], [isas] * len(tasks)))
    with gc_paused(freeze=True) if warmed else contextlib.nullcontext():  # loads (gc_pause)
        _warm_tasks(tasks, isas)
    if stamp:
        with contextlib.suppress(OSError):
            stamp.touch()
    return time.perf_counter() - t0
