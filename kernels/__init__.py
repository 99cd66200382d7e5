"""Numba kernels: dequantize, matvec/matmul over GGUF blocks, float ops. No model knowledge."""

from .cache_locator import install as _install_cache_locator

# before any kernel module defines a cached function
_install_cache_locator()
