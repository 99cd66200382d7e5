"""Numba kernels: dequantize, matvec/matmul over GGUF blocks, float ops. No model knowledge."""
