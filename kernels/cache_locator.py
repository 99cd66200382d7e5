"""Numba's on-disk cache for the kernels, invalidated when any kernel source file changes.

Numba keys a cached function to its own source file only, so a kernel whose inlined helpers
(tile_dots.py, simd.py, ...) changed would load stale machine code. Here every function
defined under kernels/ is cached in a directory named after a hash of all kernels/*.py
files: any edit selects a fresh directory, and stale entries are never read (nor unpickled,
which fails once a type they name has changed). The directory is kernels/__pycache__, or
NUMBA_CACHE_DIR if set, or the user cache directory when the package is read-only.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path

from numba.core import caching, config
from numba.core.runtime import rtsys

KERNELS_DIR = Path(__file__).resolve().parent


@functools.cache
def kernel_sources_hash() -> str:
    """sha256 over the names and contents of every kernels/*.py file (once per process)."""
    h = hashlib.sha256()
    for path in sorted(KERNELS_DIR.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


class KernelCacheLocator(caching._CacheLocator):
    def __init__(self, py_func, py_file: str, base_dir: str):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(base_dir, "llamba-kernels-" + kernel_sources_hash()[:16])

    def get_cache_path(self) -> str:
        return self._cache_path

    def get_source_stamp(self) -> str:
        return kernel_sources_hash()

    def get_disambiguator(self) -> str:
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).resolve().parent != KERNELS_DIR:
            return None  # not a kernel: Numba's own locators handle it
        for base in cache_bases():
            locator = cls(py_func, py_file, base)
            try:
                locator.ensure_cache_path()
            except OSError:
                continue
            _remove_stale_once(base)
            return locator
        return None


def cache_bases() -> list[str]:
    """Where the kernel cache may live, in order of preference."""
    if config.CACHE_DIR:
        return [config.CACHE_DIR]
    user_dir = os.path.join(os.path.expanduser("~"), ".cache", "llamba", "numba")
    return [str(KERNELS_DIR / "__pycache__"), user_dir]


def is_warm() -> bool:
    """Whether kernels of this source version have been compiled into a cache already (a
    first run on a machine, or after an upgrade, compiles them: tens of seconds)."""
    name = "llamba-kernels-" + kernel_sources_hash()[:16]
    return any(next((Path(base) / name).glob("*.nbi"), None) for base in cache_bases())


def warm_stamp(key: str) -> Path | None:
    """A file that marks `key` (a set of kernels) as compiled into this source version's
    cache, in the first cache directory that can be written; None if none can."""
    name = "llamba-kernels-" + kernel_sources_hash()[:16]
    for base in cache_bases():
        directory = Path(base) / name
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        return directory / f"warm-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return None


def remove_stale(base_dir: str, keep: int = 3) -> None:
    """Delete all but the `keep` most recently used kernel cache directories under base_dir."""
    dirs = sorted(Path(base_dir).glob("llamba-kernels-*"), key=lambda p: p.stat().st_mtime)
    current = "llamba-kernels-" + kernel_sources_hash()[:16]
    for old in [d for d in dirs if d.name != current][: max(0, len(dirs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)  # another process may still use it: it recompiles


@functools.cache
def _remove_stale_once(base_dir: str) -> None:
    remove_stale(base_dir)


def _kernel_loads_lightly(load_overload):
    """Cache.load_overload that, for kernels, refreshes only what rebuilding one needs.

    Numba refreshes the target context before every cache load, and the first refresh of a
    process imports and installs every typing and lowering registry Numba has (numpy,
    random, typed containers, jitclass, ...): 0.05-0.09 s of loading the kernel set from
    the cache (0.49 -> 0.445 s in-process, median of 5), none of which a rebuild from
    machine code uses. Kernels need the NRT up (their code calls it, and its symbols must
    be defined before the JIT links them); whatever compiles later refreshes the contexts
    itself (CompilerBase). Other functions load as Numba loads them."""

    def load(self, sig, target_context):
        if not isinstance(getattr(self._impl, "locator", None), KernelCacheLocator):
            return load_overload(self, sig, target_context)
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    load.light = True
    return load


def install() -> None:
    """Put KernelCacheLocator first in Numba's list of cache locators and kernel loads on
    the light refresh (idempotent)."""
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    if KernelCacheLocator not in impl._locator_classes:
        impl._locator_classes.insert(0, KernelCacheLocator)
    if not getattr(caching.Cache.load_overload, "light", False):
        caching.Cache.load_overload = _kernel_loads_lightly(caching.Cache.load_overload)
