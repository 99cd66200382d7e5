"""Loading the kernels pauses the garbage collector and leaves it as the program had it."""

from __future__ import annotations

import gc
import subprocess
import sys

from llamba.kernels.gc_pause import gc_paused

IMPORT_SCRIPT = r"""
import gc, importlib.util, py_compile, sys
import llamba  # the package alone (no Numba)
# its bytecode, as an installed package has it: compiling the source could itself collect
py_compile.compile(importlib.util.find_spec("llamba.kernels").origin)
if sys.argv[1] == "off":
    gc.disable()
runs = []
gc.callbacks.append(lambda phase, info: runs.append(phase))
import llamba.kernels.linear
print(gc.isenabled(), gc.get_freeze_count() > 100_000, len(runs))
"""


def import_kernels(collector: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT, collector], capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_importing_the_kernels_runs_no_collection_and_freezes_their_objects():
    enabled, frozen, collections = import_kernels("on")
    assert enabled == "True"  # the collector is back on
    assert frozen == "True"  # Numba's objects (hundreds of thousands) frozen
    assert collections == "0"


def test_a_program_that_turned_the_collector_off_keeps_it_off():
    enabled, frozen, collections = import_kernels("off")
    assert (enabled, collections) == ("False", "0")


def test_gc_paused_blocks_automatic_collections_only_inside():
    runs = []
    callback = lambda phase, info: runs.append(phase)  # noqa: E731
    gc.callbacks.append(callback)
    try:
        with gc_paused():
            assert not gc.isenabled()
            junk = [[i] for i in range(50_000)]  # far past the young generation's threshold
            assert runs == []
        assert gc.isenabled()
        junk += [[i] for i in range(50_000)]
        assert runs  # collecting again
    finally:
        gc.callbacks.remove(callback)


def test_gc_paused_restores_the_collector_after_an_exception():
    try:
        with gc_paused():
            raise KeyError
    except KeyError:
        pass
    assert gc.isenabled()
