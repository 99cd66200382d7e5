"""GGML type ids as plain ints, for Numba code that branches on the weight type."""

from ..formats.ggml_types import GGMLType

F32 = int(GGMLType.F32)
F16 = int(GGMLType.F16)
BF16 = int(GGMLType.BF16)
Q4_0 = int(GGMLType.Q4_0)
Q4_1 = int(GGMLType.Q4_1)
Q5_0 = int(GGMLType.Q5_0)
Q5_1 = int(GGMLType.Q5_1)
Q8_0 = int(GGMLType.Q8_0)
Q2_K = int(GGMLType.Q2_K)
Q3_K = int(GGMLType.Q3_K)
Q4_K = int(GGMLType.Q4_K)
Q5_K = int(GGMLType.Q5_K)
Q6_K = int(GGMLType.Q6_K)
