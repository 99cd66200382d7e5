"""Kernels give the same bits whether freshly compiled or loaded from Numba's cache.

A fastmath parallel kernel once rounded Q differently in its cached build than in the fresh
one, so a model's output changed between the first and second run of a program; only a
whole model forward showed it reliably, so that is what runs here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import hashlib
import numpy as np
from llamba.engine.catalog import resolve_model
from llamba.engine.model import Model
from llamba.kernels.cache_locator import is_warm

print(is_warm())  # anything compiled for this source version yet?
model = Model(resolve_model("smollm2-135m-instruct"), n_ctx=64, n_threads=2)
logits = model.eval(np.arange(100, 120, dtype=np.int32), logits="all")  # prefill: parallel paths
print(hashlib.sha256(logits.tobytes()).hexdigest())
"""


def run_script(script: str, cache_dir, *args: str) -> list[str]:
    """The words a Python script printed, run in a new process on this kernel cache."""
    r = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.slow
def test_fresh_and_cached_builds_agree(tmp_path, smollm2_path):
    was_warm, cold = run_script(SCRIPT, tmp_path)  # compiles and writes the cache
    assert was_warm == "False"  # nothing compiled in this cache before
    was_warm, warm = run_script(SCRIPT, tmp_path)  # loads it
    assert was_warm == "True"
    assert cold == warm


WARMUP_SCRIPT = r"""
import gc, sys
from llamba.formats.ggml_types import GGMLType
from llamba.kernels import warmup as W

if sys.argv[1] == "again":  # a warm cache must not start worker processes
    class NoPool:
        def __init__(self, *args, **kwargs):
            raise AssertionError("worker processes started for a warm cache")
    W.ProcessPoolExecutor = NoPool
collections = []
gc.callbacks.append(lambda phase, info: collections.append(phase))
W.warmup(types=[GGMLType.Q4_0, GGMLType.Q8_0], processes=2, float_ops=False)
print("ok", len(collections) if sys.argv[1] == "again" else 0)
"""


@pytest.mark.slow
def test_warmup_compiles_in_workers_once(tmp_path):
    """`llamba warmup` shares the compiling among processes the first time; once the kernels
    are cached it loads them in-process (workers would cost more than the whole load), with
    the garbage collector paused (kernels/gc_pause.py)."""
    for run in ("first", "again"):  # and loading ran no garbage collection
        assert run_script(WARMUP_SCRIPT, tmp_path, run) == ["ok", "0"]


COVERAGE_SCRIPT = r"""
import sys
import numpy as np
from numba.core import event
from llamba.engine.catalog import resolve_model
from llamba.engine.model import Model
from llamba.tools.sampling_args import compile_kernels_first

if __name__ == "__main__":
    path = resolve_model(sys.argv[1])
    compile_kernels_first(path, 2)
    with event.install_recorder("numba:compile") as rec:
        model = Model(path, n_ctx=64, n_threads=2)
        model.eval(np.arange(8, dtype=np.int32))  # a prompt batch
        model.eval(np.arange(8, 10, dtype=np.int32))  # a short one (single-threaded prepare)
        model.eval(np.array([1], dtype=np.int32))  # decode
        model.close()
    compiled = {ev.data["dispatcher"].py_func.__qualname__ for _, ev in rec.buffer
                if ev.is_start and ev.data and ev.data.get("dispatcher") is not None}
    print(sorted(compiled))
"""


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "gemma3-270m"])
def test_first_run_compile_covers_the_model(tmp_path, model):
    """What `llamba chat`/`run` compile before loading a model on a cold cache (its weight
    types, the float ops) is everything its forward passes need: prefill and decode then
    compile nothing (llama and gemma3; norms as the files give them, fused and unfused
    projections, Q4_1/Q8_0 and k-quant/Q5_0 weights)."""
    script = tmp_path / "coverage.py"  # a file: the worker processes import it as __main__
    script.write_text(COVERAGE_SCRIPT)
    r = subprocess.run(
        [sys.executable, str(script), model],
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_warm_type_compiles_every_matmul_kernel():
    """After warmup, a model's matmuls compile nothing, whatever their token count: every
    batch-size path (one token, a batch, llama.cpp's order for batches of TILED_FROM+) is
    among the warmed kernels."""
    import numpy as np

    from llamba.formats.ggml_types import TYPE_INFO
    from llamba.kernels import linear, rows_f16, tiled
    from llamba.kernels.cpu_features import best_isa
    from llamba.kernels.warmup import warm_type

    kernels = (tiled.run_block_tiles, tiled.linear_float, rows_f16.linear_f16)

    def compiled():  # the kernels' specializations, and the block task functions made
        tasks = [
            tiled.block_task.cache_info().currsize,
            tiled.float_tile_task.cache_info().currsize,
        ]
        return [len(k.overloads) for k in kernels] + tasks

    for t in linear.SUPPORTED_TYPES:
        warm_type(t, [best_isa()])
        before = compiled()
        info = TYPE_INFO[t]
        n_in = max(256, info.block_size)
        raw = np.zeros((16, n_in // info.block_size * info.type_size), np.uint8)
        raw.flags.writeable = False
        w = linear.pack_weight(raw, t, n_in)
        for n_tok in (1, 2, 3, 4, 5, 7, 8, 9, 16, 33):
            x = np.ones((n_tok, n_in), np.float32)
            linear.matmul(w, x, np.empty((n_tok, 16), np.float32))
        assert compiled() == before, t.name


LIGHT_LOAD_SCRIPT = r"""
import sys
import numpy as np
from numba import njit
from numba.core import event
from llamba.formats.ggml_types import GGMLType
from llamba.kernels.warmup import warm_type

with event.install_recorder("numba:compile") as rec:
    warm_type(GGMLType.Q8_0, ["portable"])  # compiles (first run) or loads from the cache
compiled = any(ev.is_start for _, ev in rec.buffer)
if sys.argv[1] == "first":
    print(compiled)
    sys.exit()
# loaded, and without Numba's registries (linalg is one): the light refresh
print(compiled, "numba.np.linalg" in sys.modules)


@njit(cache=False)
def user_code(x):  # np.sort, a dict, np.cumsum: registries the kernels' loads did not install
    d = {1: np.sort(x)[0]}
    return d[1] + np.cumsum(x)[-1] + np.sqrt(x[0])


print(user_code(np.array([4.0, 3.0])))
warm_type(GGMLType.Q4_0, ["portable"])  # not in the cache: compiles after the light loads
print("ok")
"""


@pytest.mark.slow
def test_code_compiles_after_kernels_load_from_the_cache(tmp_path):
    """Kernels load from the cache without Numba's full context refresh (cache_locator): a
    program's own Numba code, and kernels missing from the cache, still compile after."""
    assert run_script(LIGHT_LOAD_SCRIPT, tmp_path, "first") == ["True"]  # compiled
    assert run_script(LIGHT_LOAD_SCRIPT, tmp_path, "again") == ["False", "False", "12.0", "ok"]
