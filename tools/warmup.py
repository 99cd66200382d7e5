"""`llamba warmup`: compile every kernel into Numba's cache ahead of first use.

All linear kernels (every weight type, this CPU's instruction set) and the float ops are
compiled; with a model, a short prefill and a decode step also run it once.
"""

from __future__ import annotations

import time

import numpy as np
import psutil

from ..engine.catalog import resolve_model
from ..kernels.warmup import warmup


def add_arguments(p) -> None:
    p.add_argument("model", nargs="?", help="also run this model once (GGUF file or catalog name)")
    p.add_argument(
        "--processes",
        type=int,
        default=None,
        help="compile in N processes (default: one per physical core)",
    )


def run(args) -> int:
    processes = args.processes or psutil.cpu_count(logical=False) or 1
    seconds = warmup(processes=max(1, processes))
    print(f"kernels (every weight type, and the float ops): {seconds:.1f} s")
    if args.model:
        from ..engine.model import Model

        t0 = time.perf_counter()
        model = Model(resolve_model(args.model), n_ctx=64)
        model.eval(np.arange(8, dtype=np.int32) % model.n_vocab)  # prefill path
        model.eval(np.array([1], dtype=np.int32))  # decode path
        model.close()
        print(f"{args.model}: {time.perf_counter() - t0:.1f} s")
    return 0
