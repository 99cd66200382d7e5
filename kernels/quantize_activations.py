"""Activations to 8-bit blocks, once per call, as ggml's Q8_0 / Q8_1 / Q8_K do before vec_dot.

Two activation formats, each as separate arrays (quants apart from scales):
- 32-blocks (for Q4_0 … Q8_0 weights): xq int8 (n_tok, n_in), xd float32 (n_tok, n_in/32)
  holding the fp16-rounded scale, xs float32 (n_tok, n_in/32) = fp16(d * sum(q)) (Q8_1's s),
  xsum int32 (n_tok, n_in/32) = sum(q). For Q5_0 and Q8_0 weights, xs holds instead a start
  per word of 4 codes (int32 (n_tok, n_in/4), words_quantizer), from that word's sum.
  Rounding as ggml's x86 quantize_row_q8_0/q8_1: d = amax/127, q = rint(x * 127/amax).
- 256-blocks (for k-quant weights): xq int8 (n_tok, n_in), xd float32 (n_tok, n_in/256),
  xsum int32 (n_tok, n_in/16) = sums of 16 quants (bsums), as quantize_row_q8_K_ref;
  xs is empty (n_tok, 0).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import type_ids as T
from .inline import inline
from .scalar import f16_to_f32, f32_to_bits, f32_to_f16
from .static import static_dispatch, static_value

f32 = np.float32


@njit(cache=True)
def quantize_row_q8(x, xq, xd, xs, xsum):
    """One row x (n_in,) float32 to 32-blocks: xq (n_in,), xd, xs, xsum (n_in/32,)."""
    for b in range(x.size // 32):
        amax = f32(0.0)
        for j in range(32):
            amax = max(amax, abs(x[b * 32 + j]))
        d = amax / f32(127.0)
        inv = f32(127.0) / amax if amax != 0 else f32(0.0)
        total = 0
        for j in range(32):
            q = np.int32(np.rint(x[b * 32 + j] * inv))
            xq[b * 32 + j] = q
            total += q
        xd[b] = f16_to_f32(f32_to_f16(d))
        xs[b] = f16_to_f32(f32_to_f16(d * f32(total)))
        xsum[b] = total


@inline
def first_absmax_256(x, base):
    """(bits of the largest |x| in x[base:base + 256], the first index holding it), NaN
    counted as 0: an integer max over keys of |x|'s bits above 255 - j, which vectorizes
    (a compare-and-branch scan did not; Q8_K rows of 512 x 4096 took 4.3 ms, now 2.6)."""
    key = np.int64(0)
    for j in range(256):
        a = f32_to_bits(x[base + j]) & np.uint32(0x7FFFFFFF)
        a = a if a <= np.uint32(0x7F800000) else np.uint32(0)
        key = max(key, (np.int64(a) << 8) | (255 - j))
    return key >> 8, 255 - (key & 255)


@njit(cache=True)
def quantize_row_q8_k(x, xq, xd, xs, xsum):
    """One row x (n_in,) float32 to 256-blocks: xq (n_in,), xd (n_in/256,), xsum (n_in/16,).
    The scale comes from the first of the values of largest magnitude, with its sign."""
    for b in range(x.size // 256):
        abits, first = first_absmax_256(x, b * 256)
        if abits == 0:
            xd[b] = 0.0
            for j in range(256):
                xq[b * 256 + j] = 0
            for g in range(16):
                xsum[b * 16 + g] = 0
            continue
        iscale = f32(-127.0) / x[b * 256 + first]
        for g in range(16):
            total = np.int32(0)
            for j in range(16):
                k = b * 256 + g * 16 + j
                q = min(np.int32(np.rint(iscale * x[k])), np.int32(127))
                xq[k] = q
                total += q
            xsum[b * 16 + g] = total
        xd[b] = f32(1.0) / iscale


K_QUANTS = (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)
LEGACY = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0)


@njit(cache=True)
def quantize_rows_q8(x, xq, xd, xs, xsum, first, end):
    """Tokens first .. end - 1 of x to the 32-block format (module doc)."""
    for t in range(first, end):
        quantize_row_q8(x[t], xq[t], xd[t], xs[t], xsum[t])


@njit(cache=True)
def quantize_rows_q8_k(x, xq, xd, xs, xsum, first, end):
    """Tokens first .. end - 1 of x to the 256-block format (xs empty)."""
    for t in range(first, end):
        quantize_row_q8_k(x[t], xq[t], xd[t], xs[t], xsum[t])


# 2**23 + 2**22, the bits of the float 12582912: an integer s with |s| < 2**22 added to them
# gives the float 12582912 + s exactly, so an int32 sum started there reads as a float
# less 12582912 (tile_dots.legacy_exact_shape: a subtract in place of vcvtdq2ps)
FLOAT_BIAS = 0x4B400000


def words_quantizer(offset: int):
    """quantize_rows for Q5_0 (offset 16) and Q8_0 (128) weights: as quantize_rows_q8, but
    xs holds, per word of 4 codes, int32 (n_tok, n_in/4), FLOAT_BIAS less offset times the
    sum of the word's 4 activations. On AVX-512 VNNI a lane's vpdpbusd sum starts there:
    the offset's term (Q5_0 stores codes + 16; Q8_0's codes are read with their top bit
    flipped, + 128) and the float conversion's bias come with one broadcast load, no
    scalar ops (tile_dots.legacy_exact_shape)."""

    @njit(cache=True)
    def quantize_rows_words(x, xq, xd, xs, xsum, first, end):
        block_sums = np.empty(x.shape[1] // 32, np.float32)  # (unused)
        for t in range(first, end):
            quantize_row_q8(x[t], xq[t], xd[t], block_sums, xsum[t])
            for w in range(xs.shape[1]):
                total = (np.int32(xq[t, 4 * w]) + np.int32(xq[t, 4 * w + 1])
                         + np.int32(xq[t, 4 * w + 2]) + np.int32(xq[t, 4 * w + 3]))  # fmt: skip
                xs[t, w] = np.int32(FLOAT_BIAS) - np.int32(offset) * total

    return quantize_rows_words


quantize_rows_q5_0_words = words_quantizer(16)
quantize_rows_q8_0_words = words_quantizer(128)


@inline
def q8_arrays(n_tok, n_in):
    return (np.empty((n_tok, n_in), np.int8), np.empty((n_tok, n_in // 32), np.float32),
            np.empty((n_tok, n_in // 32), np.float32), np.empty((n_tok, n_in // 32), np.int32))  # fmt: skip


@inline
def q8_k_arrays(n_tok, n_in):
    return (np.empty((n_tok, n_in), np.int8), np.empty((n_tok, n_in // 256), np.float32),
            np.empty((n_tok, 0), np.float32), np.empty((n_tok, n_in // 16), np.int32))  # fmt: skip


@inline
def q8_words_arrays(n_tok, n_in):
    return (np.empty((n_tok, n_in), np.int8), np.empty((n_tok, n_in // 32), np.float32),
            np.empty((n_tok, n_in // 4), np.int32), np.empty((n_tok, n_in // 32), np.int32))  # fmt: skip


Q8, Q8_K, Q5_0_WORDS, Q8_0_WORDS = 0, 1, 2, 3  # the formats' codes (format_code)
# weight type -> the activation format it takes
FORMAT = {**dict.fromkeys(K_QUANTS, Q8_K), **dict.fromkeys(LEGACY, Q8), T.Q5_0: Q5_0_WORDS,
          T.Q8_0: Q8_0_WORDS}  # fmt: skip


def _by_format(q8, q8_k, q5_0_words, q8_0_words, name):
    """A static dispatch on the weight type to the function of its activation format."""
    by_code = {Q8: q8, Q8_K: q8_k, Q5_0_WORDS: q5_0_words, Q8_0_WORDS: q8_0_words}
    return static_dispatch({t: by_code[c] for t, c in FORMAT.items()}, name)


# input_arrays(qtype, n_tok, n_in) -> (xq, xd, xs, xsum), uninitialized, and
# quantize_rows(qtype, x, xq, xd, xs, xsum, first, end): x's tokens first .. end - 1 into
# them, in the format weights of the static type qtype take
input_arrays = _by_format(q8_arrays, q8_k_arrays, q8_words_arrays, q8_words_arrays,
                          "input_arrays")  # fmt: skip
quantize_rows = _by_format(quantize_rows_q8, quantize_rows_q8_k, quantize_rows_q5_0_words,
                           quantize_rows_q8_0_words, "quantize_rows")  # fmt: skip
# format_code(qtype): the format's code as a run-time value (tiled.quantize_task)
format_code = static_value(FORMAT, "format_code")


def whole_input(arrays, rows, doc):
    """quantize_input for one format: x (n_tok, n_in) float32 -> (xq, xd, xs, xsum), the
    arrays allocated by `arrays` and filled by `rows` for every token."""

    @njit(cache=True)
    def quantize_whole(x):
        xq, xd, xs, xsum = arrays(x.shape[0], x.shape[1])
        rows(x, xq, xd, xs, xsum, 0, x.shape[0])
        return xq, xd, xs, xsum

    quantize_whole.__doc__ = doc
    return quantize_whole


quantize_input_q8 = whole_input(q8_arrays, quantize_rows_q8, "The 32-block format (module doc).")
quantize_input_q8_k = whole_input(q8_k_arrays, quantize_rows_q8_k,
                                  "The 256-block format (xs empty).")  # fmt: skip
quantize_input_q5_0_words = whole_input(q8_words_arrays, quantize_rows_q5_0_words,
                                        "For Q5_0 weights (xs: word starts).")  # fmt: skip
quantize_input_q8_0_words = whole_input(q8_words_arrays, quantize_rows_q8_0_words,
                                        "For Q8_0 weights (xs: word starts).")  # fmt: skip


# quantize_input(qtype, x) -> (xq, xd, xs, xsum): x in the format weights of the static
# type qtype take (one compiled function per format, shared by the types)
quantize_input = _by_format(quantize_input_q8, quantize_input_q8_k, quantize_input_q5_0_words,
                            quantize_input_q8_0_words, "quantize_input")  # fmt: skip


# a representative weight type per activation format: kernels that differ by format only
# (tiled.run_block_tiles) compile once per format, not once per weight type
_REPRESENTATIVE = {Q8: T.Q4_0, Q8_K: T.Q4_K, Q5_0_WORDS: T.Q5_0, Q8_0_WORDS: T.Q8_0}
INPUT_FORMAT = {t: _REPRESENTATIVE[c] for t, c in FORMAT.items()}
