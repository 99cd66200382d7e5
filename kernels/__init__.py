"""Numba kernels: dequantize, matvec/matmul over GGUF blocks, float ops. No model knowledge."""

from .gc_pause import gc_paused

with gc_paused(freeze=True):  # Numba's import and the kernel modules' (gc_pause)
    from .cache_locator import install as _install_cache_locator

    # before any kernel module defines a cached function
    _install_cache_locator()
    from . import linear  # noqa: F401  the kernel modules, through their hub
