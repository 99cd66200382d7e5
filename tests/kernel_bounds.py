"""Shared by the kernel tests: the instruction-set paths to run and the error bound of a
quantized matrix product against exact float64 arithmetic."""

from __future__ import annotations

import numpy as np

from llamba.kernels.cpu_features import available_isas

ISAS = available_isas()  # fastest first; "portable" is always there
BLOCK_32 = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")
K_QUANTS = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def error_bound(name: str, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Largest |kernel - exact| allowed per output (n_tok, n_out), from the activation rounding.

    Q8_0-style 32-blocks: |x - q * fp16(d)| <= d/2 + 127 d 2^-11 with d = amax / 127;
    Q8_K 256-blocks: d/2 with d = amax / 127 in float32; F16/BF16 inputs: |x| 2^-11 / 2^-8.
    Summed with |w| over the row, plus float32 accumulation slack.
    """
    ax = np.abs(x.astype(np.float64))  # (n_tok, n_in)
    if name in BLOCK_32 or name in K_QUANTS:
        block = 256 if name in K_QUANTS else 32
        amax = ax.reshape(x.shape[0], -1, block).max(axis=2) / 127.0
        per = 0.5 + (0.0 if name in K_QUANTS else 127 * 2.0**-11)
        err = np.repeat(amax * per, block, axis=1) * (1 + 1e-6)
    else:
        err = ax * {"F32": 0.0, "F16": 2.0**-11, "BF16": 2.0**-8}[name]
    aw = np.abs(w)
    return err @ aw.T + 3e-5 * np.sqrt(w.shape[1]) * (ax @ aw.T) + 1e-30
