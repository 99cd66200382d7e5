"""The cyclic garbage collector paused while Numba and the kernels load.

Importing Numba and the kernel modules, and loading the kernels from Numba's cache, makes
hundreds of thousands of objects that live as long as the process. Every few hundred
allocations the collector walks the young ones, and ever more often all of them as the heap
grows: a tenth of loading the whole kernel set from the cache walked objects none of which
were garbage (`from llamba.kernels.warmup import warmup; warmup()` on a warm cache, median
of 5 runs: 0.57 s, 0.52 s paused).

At the end of each pause (the imports in kernels/__init__.py, warmup on a warm cache) what
is alive is frozen (gc.freeze: kept out of every later collection), as those modules and
kernels are never freed: the collections that run while a model generates then walk only
the objects made since, where a full one walked all of Numba's. Objects the program made
before are frozen with them.
"""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def gc_paused(freeze: bool = False):
    """No automatic collections inside the block (gc.collect() still runs), then the
    collector as it was; with freeze, what is alive at the end is frozen first."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()
